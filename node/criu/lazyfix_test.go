package criu

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestLazyRuns(t *testing.T) {
	const P, L = PagePresent, PagePresent | PageLazy
	anon := func(start, end uint64) vma {
		return vma{start: start, end: end, flags: mapPrivate | mapAnonymous, status: 0x201}
	}
	file := func(start, end uint64) vma { return vma{start: start, end: end, flags: mapPrivate, status: 0x41} }
	locked := anon(0x40000, 0x50000)
	locked.flags |= mapLocked
	vdso := anon(0x60000, 0x62000)
	vdso.status |= vmaVdso
	vmas := []vma{anon(0x10000, 0x20000), file(0x20000, 0x30000), anon(0x30000, 0x40000), locked, vdso}
	tests := []struct {
		name string
		runs []PageRun
		want []PageRun
	}{
		{"one anonymous run", []PageRun{{0x10000, 4, P}}, []PageRun{{0x10000, 4, L}}},
		{"file memory stays", []PageRun{{0x20000, 2, P}}, []PageRun{{0x20000, 2, P}}},
		{"a run over three VMAs is split", []PageRun{{0x1e000, 20, P}},
			[]PageRun{{0x1e000, 2, L}, {0x20000, 16, P}, {0x30000, 2, L}}},
		{"two lazy VMAs in one run stay one run", []PageRun{{0x10000, 16, P}, {0x30000, 16, P}},
			[]PageRun{{0x10000, 16, L}, {0x30000, 16, L}}},
		{"locked memory and vdso stay", []PageRun{{0x40000, 1, P}, {0x60000, 2, P}}, []PageRun{{0x40000, 1, P}, {0x60000, 2, P}}},
		{"outside every VMA stays", []PageRun{{0x70000, 1, P}}, []PageRun{{0x70000, 1, P}}},
		{"holes and parent pages stay", []PageRun{{0x10000, 1, 0}, {0x11000, 1, PageInParent}}, []PageRun{{0x10000, 1, 0}, {0x11000, 1, PageInParent}}},
		{"already lazy", []PageRun{{0x10000, 2, L}}, []PageRun{{0x10000, 2, L}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lazyRuns(tt.runs, vmas)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			pages := func(rs []PageRun) (n uint64) {
				for _, r := range rs {
					n += r.NrPages
				}
				return n
			}
			if pages(got) != pages(tt.runs) {
				t.Fatalf("%d pages became %d", pages(tt.runs), pages(got))
			}
		})
	}
}

// TestMarkLazyGivesCRIUsFlags: a real dump's pagemap, stripped of its lazy flags as CRIU leaves it when a stack
// pointer is page-aligned, is given back exactly the bytes CRIU wrote.
func TestMarkLazyGivesCRIUsFlags(t *testing.T) {
	requireCRIU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	images := t.TempDir()
	pid := startVictim(ctx, t)
	if out, err := exec.CommandContext(ctx, "criu", "dump", "-t", strconv.Itoa(pid), "-D", images, "-o", "dump.log",
		"--leave-running").CombinedOutput(); err != nil {
		t.Fatalf("criu dump: %v\n%s", err, out)
	}
	procs, err := readPstree(filepath.Join(images, "pstree.img"))
	if err != nil || len(procs) != 1 {
		t.Fatalf("pstree: %v %+v", err, procs)
	}
	if sps, err := threadSPs(images, procs[0].threads); err != nil || len(sps) != 1 || sps[0] == 0 {
		t.Fatalf("stack pointers %x: %v", sps, err)
	}
	path := filepath.Join(images, "pagemap-"+strconv.Itoa(procs[0].pid)+".img")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := ReadPagemap(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := WritePagemap(&again, pm); err != nil || !bytes.Equal(again.Bytes(), orig) {
		t.Fatalf("a read and written pagemap differs from CRIU's (%v)", err)
	}
	lazy := 0
	for i := range pm.Runs {
		if pm.Runs[i].Flags&PageLazy != 0 {
			lazy++
			pm.Runs[i].Flags &^= PageLazy
		}
	}
	if lazy == 0 {
		t.Fatalf("CRIU marked no run lazy: %+v", pm.Runs)
	}
	var stripped bytes.Buffer
	if err := WritePagemap(&stripped, pm); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, stripped.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if done, err := markLazy(images, procs[0].pid); err != nil || !done {
		t.Fatalf("markLazy: %v %v", done, err)
	}
	fixed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fixed, orig) {
		got, _ := ReadPagemap(bytes.NewReader(fixed))
		want, _ := ReadPagemap(bytes.NewReader(orig))
		t.Fatalf("the fixed pagemap differs from CRIU's:\ngot  %+v\nwant %+v", got.Runs, want.Runs)
	}
	// A pagemap with lazy runs is left alone, and so is a checkpoint whose stack pointers are not page-aligned.
	if done, err := markLazy(images, procs[0].pid); err != nil || done {
		t.Fatalf("markLazy of a pagemap with lazy runs: %v %v", done, err)
	}
	if pids, err := MarkLazy(images); err != nil || len(pids) != 0 {
		t.Fatalf("MarkLazy: %v %v", pids, err)
	}
}

func FuzzReadPagemap(f *testing.F) {
	var b bytes.Buffer
	_ = WritePagemap(&b, &Pagemap{PagesID: 1, Runs: []PageRun{{0x1000, 2, PagePresent | PageLazy}, {0x5000, 1, 0}}})
	f.Add(b.Bytes())
	b.Reset()
	_ = WritePagemap(&b, &Pagemap{PagesID: 3, Compat: true, Runs: []PageRun{{0x2000, 1, PagePresent}}})
	f.Add(b.Bytes())
	f.Add([]byte{0x19, 0x43, 0x56, 0x54, 0x25, 0x40, 0x08, 0x56, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		pm, err := ReadPagemap(bytes.NewReader(data))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WritePagemap(&out, pm); err != nil {
			return
		}
		again, err := ReadPagemap(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("a written pagemap does not read back: %v", err)
		}
		if again.PagesID != pm.PagesID || !slices.Equal(again.Runs, pm.Runs) {
			t.Fatalf("round trip changed the pagemap: %+v -> %+v", pm, again)
		}
	})
}
