package images

import (
	"os"
)

// importJob is the state of one Import. Layers it extracts wait in
// staging directories until the whole image has been read and checked;
// then commit moves them into the store together. On any failure discard
// removes them, so a refused import leaves no layer behind.
type importJob struct {
	s       *Store
	p       *progressCounter
	pending map[string]pendingLayer // by layer id
	order   []string
}

type pendingLayer struct {
	dir string
	x   extracted
}

// has reports whether layer id is stored or waiting to be.
func (j *importJob) has(id string) bool {
	_, ok := j.pending[id]
	return ok || j.s.HasLayer(id)
}

// add takes over dir, the extracted tree of layer x.id.
func (j *importJob) add(dir string, x extracted) {
	if _, dup := j.pending[x.id]; dup {
		os.RemoveAll(dir)
		return
	}
	j.pending[x.id] = pendingLayer{dir: dir, x: x}
	j.order = append(j.order, x.id)
}

func (j *importJob) layerSize(id string) int64 {
	if p, ok := j.pending[id]; ok {
		return p.x.size
	}
	return j.s.layerSize(id)
}

// commit moves the pending layers into the store, bottom first.
func (j *importJob) commit() error {
	for _, id := range j.order {
		if err := j.s.commitLayer(j.pending[id].dir, j.pending[id].x); err != nil {
			return err
		}
	}
	return nil
}

// discard removes the staging directories that were not committed.
func (j *importJob) discard() {
	for _, p := range j.pending {
		os.RemoveAll(p.dir) // gone already if it was committed
	}
}
