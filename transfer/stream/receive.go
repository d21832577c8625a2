package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ReceiveOptions configure Receive and ReceiveParallel. Every zero field
// means the documented default; DefaultReceiveOptions spells them out.
type ReceiveOptions struct {
	// StagingDir is where the temporary directory is made; it must be on the
	// same file system as the destination. Zero: the destination's parent.
	StagingDir string
	// Sync makes every file and directory durable (fsync) before the final
	// rename and the parent after it. Zero: false (no fsync);
	// DefaultReceiveOptions sets it.
	Sync bool
	// Limits bound what the stream may ask for. Zero fields: defaults.
	Limits Limits
	// Progress, when not nil, is called from one goroutine at most every
	// ProgressInterval, and once more with Done set at the end.
	Progress func(Progress)
	// ProgressInterval. Zero: DefaultProgressInterval (100 ms).
	ProgressInterval time.Duration
	// Logger receives debug and warning records. Nil: discard.
	Logger *slog.Logger
	// Chunk, when not nil, is told of every chunk once its bytes are written to the staged file and checked
	// against the sum its sender took as it read them, so that a caller can prove the files against sums of
	// its own without reading them again. It is called from several goroutines at once and must not block.
	Chunk func(ChunkSum)
}

// ChunkSum is one chunk of a received file, written and checked: Length bytes at Offset whose SHA-256 is
// SHA256. A file sent whole (Send, or one smaller than the chunk size) is one chunk at offset 0.
type ChunkSum struct {
	Path   string
	Offset int64
	Length int64
	SHA256 [32]byte
}

// DefaultReceiveOptions returns the recommended options: defaults, with Sync on.
func DefaultReceiveOptions() ReceiveOptions {
	return ReceiveOptions{Sync: true, Limits: DefaultLimits(), ProgressInterval: DefaultProgressInterval,
		Logger: slog.New(slog.DiscardHandler)}
}

// Validate checks the options.
func (o ReceiveOptions) Validate() error {
	if err := o.Limits.Validate(); err != nil {
		return fmt.Errorf("receive options: %w", err)
	}
	if o.ProgressInterval < 0 {
		return fmt.Errorf("receive options: negative ProgressInterval %v", o.ProgressInterval)
	}
	return nil
}

func (o ReceiveOptions) withDefaults() ReceiveOptions {
	if o.ProgressInterval == 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Limits = o.Limits.withDefaults()
	return o
}

// Receive reads one stream written by Send from r and creates dir with its
// files. dir must not exist. The files are written into a fresh temporary
// directory beside dir (or in opts.StagingDir); each file's size and SHA-256
// are checked against the manifest as it ends, and only when the trailer
// arrived and every file checked is the temporary directory renamed to dir.
// On any error the temporary directory is removed and dir does not exist; the
// error wraps one of the package's sentinel errors and names the file.
//
// Receive reads no further than the trailer. If ctx is cancelled it returns
// ctx.Err() promptly; a Read from r blocked at that moment returns when the
// caller closes r. Receive never closes r.
func Receive(ctx context.Context, r io.Reader, dir string, opts ReceiveOptions) (*Manifest, Stats, error) {
	return receive(ctx, []io.Reader{r}, dir, opts)
}

func receive(ctx context.Context, rs []io.Reader, dir string, opts ReceiveOptions) (*Manifest, Stats, error) {
	if err := opts.Validate(); err != nil {
		return nil, Stats{}, err
	}
	opts = opts.withDefaults()
	if err := checkStreamCount(len(rs)); err != nil {
		return nil, Stats{}, fmt.Errorf("receive: %w", err)
	}
	a, err := newAssembly(dir, opts, len(rs))
	if err != nil {
		return nil, Stats{}, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.tr.run(rctx)
	err = a.run(rctx, cancel, rs)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err == nil {
		err = a.commit(dir)
	}
	if err != nil {
		a.discard()
		a.log.Warn("receive failed", "dir", dir, "err", err)
		return nil, a.tr.finish(), fmt.Errorf("receive %s: %w", dir, err)
	}
	return a.m, a.tr.finish(), nil
}

// run receives all streams; the first error stops the others. It returns as
// soon as ctx is done, even while a reader goroutine is still blocked in Read.
func (a *assembly) run(ctx context.Context, cancel context.CancelFunc, rs []io.Reader) error {
	g := &group{cancel: cancel}
	for i, r := range rs {
		g.goFn(func() error { return a.receiveStream(ctx, r, i) })
	}
	if err := g.wait(); err != nil {
		return err
	}
	return a.complete()
}

// newAssembly checks dir is free and makes the staging directory.
func newAssembly(dir string, opts ReceiveOptions, n int) (*assembly, error) {
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("receive: destination %s already exists; remove it or choose another: %w", dir, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("receive: %w", err)
	}
	parent := opts.StagingDir
	if parent == "" {
		parent = filepath.Dir(dir)
	}
	staging, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".ferry-staging-*")
	if err != nil {
		return nil, fmt.Errorf("receive: make staging directory: %w", err)
	}
	root, err := os.OpenRoot(staging)
	if err != nil {
		os.RemoveAll(staging)
		return nil, fmt.Errorf("receive: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(n), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(uint64(opts.Limits.MaxFrameSize)))
	if err != nil {
		root.Close()
		os.RemoveAll(staging)
		return nil, fmt.Errorf("receive: zstd decoder: %w", err)
	}
	return &assembly{staging: staging, root: root, lim: opts.Limits, sync: opts.Sync, dec: dec, log: opts.Logger, onChunk: opts.Chunk,
		nstreams: n, seen: make([]bool, n), tr: newTracker(opts.Progress, opts.ProgressInterval, n)}, nil
}

// commit applies modes, makes the files durable if asked, and renames the
// staging directory to dir.
func (a *assembly) commit(dir string) error {
	for _, e := range a.m.Entries {
		if err := a.root.Chmod(e.Path, fs.FileMode(e.Mode)); err != nil {
			return fmt.Errorf("chmod %s: %w", e.Path, err)
		}
	}
	if a.sync {
		if err := syncDirs(a.staging); err != nil {
			return err
		}
	}
	if err := os.Rename(a.staging, dir); err != nil {
		return fmt.Errorf("move staged files into place: %w", err)
	}
	a.committed = true
	a.closeAll()
	if a.sync {
		return syncDir(filepath.Dir(dir))
	}
	return nil
}

// discard removes everything staged.
func (a *assembly) discard() {
	a.closeAll()
	if !a.committed {
		os.RemoveAll(a.staging)
	}
}

func syncDirs(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(p)
	})
}

func syncDir(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return nil
}
