package criu

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// CRIU 4.2 marks the pages a lazy restore may leave to `criu lazy-pages` (PageLazy): those of private anonymous
// memory, except the page that holds a thread's stack pointer. Its test for that page (is_stack in mem.c)
// masks the wrong bits: (sp ^ vaddr) & ~PAGE_MASK is zero for every page-aligned vaddr as soon as sp itself is
// page-aligned. So when one thread of a process happens to stop with its stack pointer on a page boundary,
// none of that process's pages is marked lazy: the checkpoint is still right, but a lazy restore copies all of
// its memory before the process runs (3.5 s instead of 0.2 s for a 750 MB redis), a clone or an incoming
// migration silently losing what lazy restore is for. It depends on where the threads stopped, so the same
// process gives such a checkpoint at every dump or at none.
//
// MarkLazy finds such processes in a checkpoint and writes their pagemaps with the flags CRIU gives every
// other process: the runs are split where needed, so that the pages image (in the order of the present runs)
// stays as it is.

// Bits of a VMA (vma_entry) that decide whether its pages can be lazy (vma_entry_can_be_lazy in CRIU).
const (
	mapPrivate   = 0x2
	mapAnonymous = 0x20
	mapLocked    = 0x2000
	mapHugetlb   = 0x40000

	vmaVsyscall = 1 << 2
	vmaVdso     = 1 << 3
	vmaVvar     = 1 << 12
)

// vma is the part of a vma_entry that decides laziness.
type vma struct {
	start, end uint64
	flags      uint32
	status     uint32
}

func (v vma) canBeLazy() bool {
	return v.flags&mapAnonymous != 0 && v.flags&mapPrivate != 0 && v.flags&(mapLocked|mapHugetlb) == 0 &&
		v.status&(vmaVsyscall|vmaVdso|vmaVvar) == 0
}

// MarkLazy rewrites, in the CRIU images in dir, the pagemap of each process that CRIU left without any lazy
// page because of a page-aligned stack pointer (see above). It returns the pids it fixed.
func MarkLazy(dir string) ([]int, error) {
	procs, err := readPstree(filepath.Join(dir, "pstree.img"))
	if err != nil {
		return nil, err
	}
	var fixed []int
	for _, p := range procs {
		sps, err := threadSPs(dir, p.threads)
		if err != nil {
			return fixed, err
		}
		if !slices.ContainsFunc(sps, func(sp uint64) bool { return sp%pageSize == 0 }) {
			continue // CRIU's own flags are right
		}
		done, err := markLazy(dir, p.pid)
		if err != nil {
			return fixed, err
		}
		if done {
			fixed = append(fixed, p.pid)
		}
	}
	return fixed, nil
}

// markLazy gives process pid's pagemap in dir the flags of lazyRuns if it has no lazy run; it reports whether
// it wrote it.
func markLazy(dir string, pid int) (bool, error) {
	path := filepath.Join(dir, fmt.Sprintf("pagemap-%d.img", pid))
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	pm, err := ReadPagemap(bytes.NewReader(b))
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if slices.ContainsFunc(pm.Runs, func(r PageRun) bool { return r.Flags&PageLazy != 0 }) {
		return false, nil // not the case above: CRIU's flags stay
	}
	vmas, err := readVMAs(filepath.Join(dir, fmt.Sprintf("mm-%d.img", pid)))
	if err != nil {
		return false, err
	}
	out := &Pagemap{PagesID: pm.PagesID, Compat: pm.Compat, Runs: lazyRuns(pm.Runs, vmas)}
	if slices.Equal(out.Runs, pm.Runs) {
		return false, nil
	}
	var buf bytes.Buffer
	if err := WritePagemap(&buf, out); err != nil {
		return false, err
	}
	tmp := path + ".lazy"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

// lazyRuns returns runs with the flags CRIU gives when the bug above does not strike: a present page, not in a
// parent, is lazy when its VMA can be. (With its test as it is, CRIU then treats no page as a stack page, so
// the pages holding the stack pointers are lazy too; this does the same, which is what lazy restores here have
// always worked with.) vmas are sorted by address. A run is split where its VMAs' laziness changes; pages keep
// their order and no runs are joined.
func lazyRuns(runs []PageRun, vmas []vma) []PageRun {
	lazyAt := func(addr uint64) (lazy bool, until uint64) {
		i, found := slices.BinarySearchFunc(vmas, addr, func(v vma, a uint64) int {
			switch {
			case v.end <= a:
				return -1
			case v.start > a:
				return 1
			}
			return 0
		})
		if !found {
			if i < len(vmas) {
				return false, vmas[i].start
			}
			return false, math.MaxUint64
		}
		return vmas[i].canBeLazy(), vmas[i].end
	}
	out := make([]PageRun, 0, len(runs))
	for _, r := range runs {
		if r.Flags&PagePresent == 0 || r.Flags&PageInParent != 0 {
			out = append(out, r)
			continue
		}
		for at, end := r.Vaddr, r.end(); at < end; {
			lazy, until := lazyAt(at)
			until = min(until, end)
			flags := r.Flags &^ PageLazy
			if lazy {
				flags |= PageLazy
			}
			if n := len(out); n > 0 && at != r.Vaddr && out[n-1].Flags == flags {
				out[n-1].NrPages += (until - at) / pageSize // the next VMA of the same run, same laziness
			} else {
				out = append(out, PageRun{Vaddr: at, NrPages: (until - at) / pageSize, Flags: flags})
			}
			at = until
		}
	}
	return out
}

// proc is one process of pstree.img.
type proc struct {
	pid     int
	threads []uint32
}

func readPstree(path string) ([]proc, error) {
	msgs, err := readImage(path, pstreeMagic)
	if err != nil {
		return nil, err
	}
	var out []proc
	for _, m := range msgs {
		fs, err := protoFields(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		pid, ok := field(fs, 1)
		if !ok || pid.value == 0 {
			return nil, fmt.Errorf("%s: %w: an entry without a pid", path, ErrBadImage)
		}
		threads, err := uint32s(fs, 5)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(threads) == 0 {
			threads = []uint32{uint32(pid.value)}
		}
		out = append(out, proc{pid: int(pid.value), threads: threads})
	}
	return out, nil
}

// threadSPs returns the stack pointers of threads (x86-64: core_entry.thread_info.gpregs.sp).
func threadSPs(dir string, threads []uint32) ([]uint64, error) {
	sps := make([]uint64, 0, len(threads))
	for _, tid := range threads {
		path := filepath.Join(dir, "core-"+strconv.FormatUint(uint64(tid), 10)+".img")
		msgs, err := readImage(path, coreMagic)
		if err != nil {
			return nil, err
		}
		sp, err := coreSP(msgs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		sps = append(sps, sp)
	}
	return sps, nil
}

var errNoSP = errors.New("no x86-64 stack pointer in the core image")

func coreSP(msgs [][]byte) (uint64, error) {
	if len(msgs) == 0 {
		return 0, fmt.Errorf("%w: %w", ErrBadImage, errNoSP)
	}
	path := []int{2, 2, 20} // thread_info, gpregs, sp
	b := msgs[0]
	for i, num := range path {
		fs, err := protoFields(b)
		if err != nil {
			return 0, err
		}
		f, ok := field(fs, protowire.Number(num))
		if !ok {
			return 0, fmt.Errorf("%w: %w", ErrBadImage, errNoSP)
		}
		if i == len(path)-1 {
			return f.value, nil
		}
		b = f.bytes
	}
	return 0, errNoSP
}

// readVMAs returns the VMAs of mm.img at path (mm_entry.vmas), sorted by address.
func readVMAs(path string) ([]vma, error) {
	msgs, err := readImage(path, mmMagic)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%s: %w: no mm entry", path, ErrBadImage)
	}
	fs, err := protoFields(msgs[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []vma
	for _, f := range fs {
		if f.num != 14 {
			continue
		}
		vf, err := protoFields(f.bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var v vma
		for _, x := range vf {
			switch x.num {
			case 1:
				v.start = x.value
			case 2:
				v.end = x.value
			case 6:
				v.flags = uint32(x.value)
			case 7:
				v.status = uint32(x.value)
			}
		}
		if v.end <= v.start {
			return nil, fmt.Errorf("%s: %w: a VMA from %#x to %#x", path, ErrBadImage, v.start, v.end)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b vma) int { return cmp.Compare(a.start, b.start) })
	return out, nil
}
