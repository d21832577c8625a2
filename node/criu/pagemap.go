package criu

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// CRIU's pagemap-<pid>.img: a pagemap_head (the pages image's id), then one pagemap_entry per run of pages. A
// run's pages are in the pages image (pages-<pages_id>.img) in the order of the runs that have PagePresent; a
// run with PageLazy may be left to `criu lazy-pages` by a lazy restore, one without it is restored at once.
const (
	PageInParent = 1 << 0 // PE_PARENT: the pages are in the parent checkpoint
	PageLazy     = 1 << 1 // PE_LAZY: the pages may be restored lazily
	PagePresent  = 1 << 2 // PE_PRESENT: the pages are in the pages image

	pageSize    = 4096
	maxRunPages = 1 << 40 // 4 PiB: more than any address space
)

// PageRun is one entry of a pagemap image: NrPages pages from Vaddr, with CRIU's flags (PageLazy, ...).
type PageRun struct {
	Vaddr   uint64
	NrPages uint64
	Flags   uint32
}

func (r PageRun) end() uint64 { return r.Vaddr + r.NrPages*pageSize }

// Pagemap is a decoded pagemap image.
type Pagemap struct {
	PagesID uint32 // the pages image is pages-<PagesID>.img
	Runs    []PageRun
	// Compat: the image gave the runs' lengths in compat_nr_pages (field 2, CRIU before 4) instead of
	// nr_pages (field 5); it is written back the same way.
	Compat bool
}

// ReadPagemap decodes a pagemap image from r. A truncated or malformed image fails with ErrBadImage.
func ReadPagemap(r io.Reader) (*Pagemap, error) {
	msgs, err := readImageFrom(r, pagemapMagic)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%w: a pagemap without its head", ErrBadImage)
	}
	head, err := protoFields(msgs[0])
	if err != nil {
		return nil, err
	}
	id, _ := field(head, 1)
	pm := &Pagemap{PagesID: uint32(id.value), Runs: make([]PageRun, 0, len(msgs)-1)}
	for _, m := range msgs[1:] {
		fs, err := protoFields(m)
		if err != nil {
			return nil, err
		}
		vaddr, _ := field(fs, 1)
		flags, _ := field(fs, 4)
		run := PageRun{Vaddr: vaddr.value, Flags: uint32(flags.value)}
		if nr, ok := field(fs, 5); ok {
			run.NrPages = nr.value
		} else {
			nr, _ := field(fs, 2)
			run.NrPages, pm.Compat = nr.value, true
		}
		if inParent, _ := field(fs, 3); inParent.value != 0 {
			run.Flags |= PageInParent
		}
		if run.Vaddr%pageSize != 0 || run.NrPages > maxRunPages || run.Vaddr > math.MaxUint64-run.NrPages*pageSize {
			return nil, fmt.Errorf("%w: a run of %d pages at %#x", ErrBadImage, run.NrPages, run.Vaddr)
		}
		pm.Runs = append(pm.Runs, run)
	}
	return pm, nil
}

// WritePagemap encodes pm as a pagemap image to w.
func WritePagemap(w io.Writer, pm *Pagemap) error {
	out := binary.LittleEndian.AppendUint32(nil, imgCommonMagic)
	out = binary.LittleEndian.AppendUint32(out, pagemapMagic)
	add := func(fields ...uint64) { // number, value, number, value...
		var m []byte
		for i := 0; i < len(fields); i += 2 {
			m = protowire.AppendTag(m, protowire.Number(fields[i]), protowire.VarintType)
			m = protowire.AppendVarint(m, fields[i+1])
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(m)))
		out = append(out, m...)
	}
	add(1, uint64(pm.PagesID))
	for _, r := range pm.Runs {
		if pm.Compat {
			if r.NrPages > math.MaxUint32 {
				return fmt.Errorf("a run of %d pages does not fit the old pagemap format", r.NrPages)
			}
			add(1, r.Vaddr, 2, r.NrPages, 4, uint64(r.Flags))
		} else {
			add(1, r.Vaddr, 2, 0, 4, uint64(r.Flags), 5, r.NrPages)
		}
	}
	_, err := w.Write(out)
	return err
}
