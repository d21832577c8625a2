package node

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
)

// receivedCopy writes a finished snapshot directory for id under dir/incoming, as a stream would deliver it.
func receivedCopy(t *testing.T, dir, id string) string {
	t.Helper()
	pend, err := checkpoint.Begin(filepath.Join(dir, "incoming"), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pend.ImagesDir(), "pages-1.img"), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pend.DiffPath(), []byte("tar"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pend.WriteRecord(ContainerConfig{Name: "np", Image: "busybox"}); err != nil {
		t.Fatal(err)
	}
	ck, _, err := pend.Finish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ck.Dir
}

func TestAcceptSnapshot(t *testing.T) {
	id := checkpoint.NewID(time.Now())
	tests := []struct {
		name    string
		spoil   func(t *testing.T, dir string)
		wantErr error
	}{
		{"intact copy", func(*testing.T, string) {}, nil},
		{"a flipped byte", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, "images", "pages-1.img"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteAt([]byte{1}, 100)
			f.Close()
		}, ErrRejected},
		{"an extra file", func(t *testing.T, dir string) {
			_ = os.WriteFile(filepath.Join(dir, "images", "extra.img"), []byte("x"), 0o600)
		}, ErrRejected},
		{"a missing file", func(t *testing.T, dir string) { _ = os.Remove(filepath.Join(dir, checkpoint.DiffFile)) }, ErrRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a := &Agent{cfg: Config{Name: "vg-1", DataDir: dir}, log: slog.Default()}
			copyDir := receivedCopy(t, dir, id)
			tt.spoil(t, copyDir)
			err := a.AcceptSnapshot(context.Background(), id, copyDir, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if _, serr := os.Stat(copyDir); !os.IsNotExist(serr) {
				t.Fatalf("the received directory is left: %v", serr)
			}
			if a.HasSnapshot(id) != (tt.wantErr == nil) {
				t.Fatalf("HasSnapshot = %v after err %v", a.HasSnapshot(id), err)
			}
			if tt.wantErr != nil {
				return
			}
			if err := a.VerifySnapshot(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			// A second copy of a snapshot already held is dropped; removal removes it.
			if err := a.AcceptSnapshot(context.Background(), id, receivedCopy(t, dir, id), nil); err != nil {
				t.Fatal(err)
			}
			if err := a.RemoveSnapshot(id); err != nil || a.HasSnapshot(id) {
				t.Fatalf("remove: %v, still held %v", err, a.HasSnapshot(id))
			}
		})
	}
	a := &Agent{cfg: Config{Name: "vg-1", DataDir: t.TempDir()}, log: slog.Default()}
	if err := a.AcceptSnapshot(context.Background(), "../x", t.TempDir(), nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("accepting a bad id: %v", err)
	}
}

// sumsOf is what a transfer reports for the files it wrote under dir.
func sumsOf(t *testing.T, dir string) map[string]checkpoint.Sum {
	t.Helper()
	m, err := checkpoint.BuildManifest(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]checkpoint.Sum{}
	for _, f := range m.Files {
		out[f.Path] = checkpoint.Sum{Size: f.Size, SHA256: f.SHA256, ChunkSize: m.ChunkSize, Chunks: f.Chunks}
	}
	return out
}

func TestAcceptSnapshotWithTransferSums(t *testing.T) {
	id := checkpoint.NewID(time.Now())
	tests := []struct {
		name    string
		spoil   func(sums map[string]checkpoint.Sum)
		wantErr error
	}{
		{"sums as listed", func(map[string]checkpoint.Sum) {}, nil},
		{"a file arrived with another sum", func(s map[string]checkpoint.Sum) {
			f := s["images/pages-1.img"]
			f.Chunks = []string{strings.Repeat("0", 64)}
			s["images/pages-1.img"] = f
		}, ErrRejected},
		{"a file did not arrive", func(s map[string]checkpoint.Sum) { delete(s, checkpoint.DiffFile) }, ErrRejected},
		{"an unlisted file arrived", func(s map[string]checkpoint.Sum) {
			s["images/extra.img"] = checkpoint.Sum{Size: 1, SHA256: strings.Repeat("1", 64)}
		}, ErrRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a := &Agent{cfg: Config{Name: "vg-2", DataDir: dir}, log: slog.Default()}
			copyDir := receivedCopy(t, dir, id)
			sums := sumsOf(t, copyDir)
			tt.spoil(sums)
			if err := a.AcceptSnapshot(context.Background(), id, copyDir, sums); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if a.HasSnapshot(id) != (tt.wantErr == nil) {
				t.Fatalf("HasSnapshot = %v", a.HasSnapshot(id))
			}
		})
	}
}
