package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryhq/ferry/node/archive"
)

// Import imports the image at path under name, replacing any image of
// that name (its layers stay shared). The format is detected:
//
//   - a directory with an oci-layout file: an OCI image layout;
//   - a directory with manifest.json: an unpacked `docker save`;
//   - any other directory: a root file system, stored as one layer;
//   - a file (plain, gzip or zstd): a tar of one of the above, that is an
//     OCI archive, a `docker save` archive, or a root file system tarball.
//
// Everything read is checked: tar entries against traversal, blobs against
// their digests, layers against the config's diff_ids, sizes against
// bounds. On error nothing is kept: no record, no layer, no staging.
//
// progress, if not nil, is called now and then with the number of bytes
// read so far from path and from the blobs in it; the count can exceed
// the size of path for archives, whose blobs are read after unpacking.
func (s *Store) Import(ctx context.Context, name, path string, progress func(done int64)) (*Image, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("image source: %w", err)
	}
	j := &importJob{s: s, p: &progressCounter{fn: progress}, pending: map[string]pendingLayer{}}
	defer j.discard()
	start := time.Now()
	s.log.Info("importing image", "image", name, "path", abs)
	var img *Image
	if fi.IsDir() {
		img, err = j.importDir(ctx, abs)
	} else {
		img, err = j.importFile(ctx, abs)
	}
	j.p.flush()
	if err == nil {
		err = j.commit()
	}
	if err != nil {
		return nil, fmt.Errorf("import %s from %s: %w", name, abs, err)
	}
	img.Name, img.Created = name, time.Now().UTC()
	if err := s.putImage(img); err != nil {
		return nil, fmt.Errorf("import %s: %w", name, err)
	}
	s.log.Info("image imported", "image", name, "id", img.ID, "source", img.Source,
		"layers", len(img.Layers), "size", img.Size, "took", time.Since(start).Round(time.Millisecond))
	return img, nil
}

func (j *importJob) importDir(ctx context.Context, dir string) (*Image, error) {
	switch {
	case isRegularFile(dir, "oci-layout"):
		return j.importOCI(ctx, dir, "oci-layout")
	case isRegularFile(dir, "manifest.json"):
		return j.importDocker(ctx, dir)
	}
	return j.importRootfsDir(ctx, dir)
}

// importFile unpacks the (decompressed) tar at path into a staging
// directory while hashing it, then looks at what it got.
func (j *importJob) importFile(ctx context.Context, path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image source: %w", err)
	}
	defer f.Close()
	r, done, err := decompress(j.p.reader(f), filepath.Base(path))
	if err != nil {
		return nil, err
	}
	defer done()
	staging, err := j.s.tempDir("import-")
	if err != nil {
		return nil, err
	}
	x, err := j.s.extractTo(ctx, r, staging, archive.WhiteoutsDrop, filepath.Base(path))
	if err == nil && !isRegularFile(staging, "oci-layout") && !isRegularFile(staging, "manifest.json") {
		j.add(staging, x) // a root file system: staging is the layer
		return rootfsImage(x.id, x.size, "rootfs-tar")
	}
	defer os.RemoveAll(staging)
	switch {
	case err != nil:
		return nil, err
	case isRegularFile(staging, "oci-layout"):
		return j.importOCI(ctx, staging, "oci-archive")
	}
	return j.importDocker(ctx, staging)
}

// progressCounter counts bytes read for the progress callback, calling it
// at most once per progressStep bytes.
type progressCounter struct {
	fn         func(int64)
	done, last int64
}

const progressStep = 1 << 20

func (p *progressCounter) add(n int) {
	p.done += int64(n)
	if p.fn != nil && p.done-p.last >= progressStep {
		p.last = p.done
		p.fn(p.done)
	}
}

func (p *progressCounter) flush() {
	if p.fn != nil && p.done != p.last {
		p.last = p.done
		p.fn(p.done)
	}
}

func (p *progressCounter) reader(r io.Reader) io.Reader { return &progressReader{r: r, p: p} }

type progressReader struct {
	r io.Reader
	p *progressCounter
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.add(n)
	return n, err
}
