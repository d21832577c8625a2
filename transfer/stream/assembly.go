package stream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// assembly is the receiving side of one transfer: the staging directory, the
// manifest (from whichever stream delivered it first) and the state of every
// file. Streams call it concurrently; mu guards the fields below it.
type assembly struct {
	staging   string
	root      *os.Root
	lim       Limits
	sync      bool
	dec       *zstd.Decoder
	log       *slog.Logger
	onChunk   func(ChunkSum)
	tr        *tracker
	nstreams  int
	committed bool
	closeOnce sync.Once

	mu    sync.Mutex
	info  *streamInfo
	m     *Manifest
	seen  []bool
	files []*fileState
}

// fileState is one staged file. Chunks may arrive from several streams at
// once; WriteAt on distinct ranges needs no lock, everything else takes mu.
type fileState struct {
	e       Entry
	mu      sync.Mutex
	f       *os.File
	created bool
	refs    int      // chunks being received now
	left    int64    // chunks not yet complete
	got     []uint64 // bitset of chunks started
	done    bool
}

// join checks a stream's info frame against the transfer's.
func (a *assembly) join(s streamInfo) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if int(s.Count) != a.nstreams {
		return fmt.Errorf("%w: stream says the transfer has %d streams, %d were given to the receiver", ErrCorrupt, s.Count, a.nstreams)
	}
	if int(s.Index) >= a.nstreams || a.seen[s.Index] {
		return fmt.Errorf("%w: stream index %d repeated or out of range 0..%d", ErrCorrupt, s.Index, a.nstreams-1)
	}
	if s.ChunkSize != 0 && (s.ChunkSize < minChunkSize || s.ChunkSize > uint64(a.lim.MaxFileSize)) {
		return fmt.Errorf("%w: chunk size %d outside [%d, %d]", ErrCorrupt, s.ChunkSize, minChunkSize, a.lim.MaxFileSize)
	}
	ref := s
	ref.Index = 0
	if a.info == nil {
		a.info = &ref
	} else if *a.info != ref {
		return fmt.Errorf("%w: stream %d belongs to another transfer (id, chunk size or manifest differ)", ErrCorrupt, s.Index)
	}
	a.seen[s.Index] = true
	return nil
}

// setManifest installs the manifest, once, after checking it against the
// digest every stream announced and validating it.
func (a *assembly) setManifest(data []byte) error {
	sum := sha256.Sum256(data)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !bytes.Equal(sum[:], a.info.ManifestSum[:]) {
		return fmt.Errorf("%w: manifest does not match the digest its stream announced", ErrCorrupt)
	}
	if a.m != nil {
		return nil
	}
	m, err := DecodeManifest(data, a.lim)
	if err != nil {
		return err
	}
	a.m = m
	a.files = make([]*fileState, len(m.Entries))
	a.tr.rawTotal.Store(m.TotalSize())
	a.tr.filesTotal.Store(int64(len(m.Entries)))
	return nil
}

// beginChunk checks a chunk header against the manifest and opens its file.
func (a *assembly) beginChunk(c chunkHdr) (*fileState, error) {
	fsx, idx, err := a.chunkState(c)
	if err != nil {
		return nil, err
	}
	fsx.mu.Lock()
	defer fsx.mu.Unlock()
	if fsx.got[idx/64]&(1<<(idx%64)) != 0 {
		return nil, fmt.Errorf("%w: chunk of %s at offset %d arrived twice", ErrCorrupt, fsx.e.Path, c.Offset)
	}
	if err := a.open(fsx); err != nil {
		return nil, err
	}
	fsx.got[idx/64] |= 1 << (idx % 64)
	fsx.refs++
	a.tr.setFile(fsx.e.Path)
	return fsx, nil
}

// chunkState finds (or makes) the file state of a chunk and checks the
// chunk's geometry: offset and length must be exactly the plan's.
func (a *assembly) chunkState(c chunkHdr) (*fileState, uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if int64(c.File) >= int64(len(a.files)) {
		return nil, 0, fmt.Errorf("%w: chunk for file %d, the manifest lists %d", ErrCorrupt, c.File, len(a.files))
	}
	e := a.m.Entries[c.File]
	cs := int64(a.info.ChunkSize)
	n := numChunks(e.Size, cs)
	size, step := uint64(e.Size), uint64(cs)
	if cs == 0 {
		step = size + 1
	}
	if c.Offset%step != 0 || c.Offset/step >= uint64(n) || c.Length != min(step, size-c.Offset) {
		return nil, 0, fmt.Errorf("%w: chunk of %s at offset %d length %d does not fit its %d bytes",
			ErrCorrupt, e.Path, c.Offset, c.Length, e.Size)
	}
	if a.files[c.File] == nil {
		a.files[c.File] = &fileState{e: e, left: n, got: make([]uint64, (n+63)/64)}
	}
	return a.files[c.File], c.Offset / step, nil
}

// open opens the staged file for writing, creating it on first use. Caller holds fsx.mu.
func (a *assembly) open(fsx *fileState) error {
	if fsx.f != nil {
		return nil
	}
	flag := os.O_RDWR
	if !fsx.created {
		if d := path.Dir(fsx.e.Path); d != "." {
			if err := a.root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("%w: create directory for %s: %v", ErrUnsafePath, fsx.e.Path, err)
			}
		}
		flag |= os.O_CREATE | os.O_EXCL
	}
	f, err := a.root.OpenFile(fsx.e.Path, flag, 0o600)
	if err != nil {
		return fmt.Errorf("stage %s: %w", fsx.e.Path, err)
	}
	fsx.f, fsx.created = f, true
	return nil
}

// endChunk records a complete chunk; the file's last one triggers its check.
// h is the chunk's hash when the chunk is the whole file, else nil.
func (a *assembly) endChunk(fsx *fileState, h hash.Hash) error {
	fsx.mu.Lock()
	defer fsx.mu.Unlock()
	fsx.refs--
	fsx.left--
	var err error
	if fsx.left == 0 {
		err = a.verify(fsx, h)
	}
	if fsx.refs == 0 && fsx.f != nil {
		if cerr := fsx.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("stage %s: %w", fsx.e.Path, cerr)
		}
		fsx.f = nil
	}
	return err
}

// verify compares the file's SHA-256 (from h, or re-read from the staged
// file) with the manifest. Caller holds fsx.mu and fsx.f is open.
func (a *assembly) verify(fsx *fileState, h hash.Hash) error {
	if fsx.e.SHA256 == "" {
		// Listed without a digest: every chunk was checked against its own SHA-256 as it arrived.
		return a.finishFile(fsx)
	}
	if h == nil {
		h = sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(fsx.f, 0, fsx.e.Size)); err != nil {
			return fmt.Errorf("re-read staged %s: %w", fsx.e.Path, err)
		}
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != fsx.e.SHA256 {
		return fmt.Errorf("%w for %s: manifest says %s, received %s; the file changed on the source after its manifest was built or the stream was corrupted in transit, retry the transfer",
			ErrChecksum, fsx.e.Path, fsx.e.SHA256, got)
	}
	return a.finishFile(fsx)
}

// finishFile syncs a checked file if asked and counts it done. Caller holds fsx.mu.
func (a *assembly) finishFile(fsx *fileState) error {
	if a.sync {
		if err := fsx.f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", fsx.e.Path, err)
		}
	}
	fsx.done = true
	a.tr.files.Add(1)
	return nil
}

// complete checks, once every stream ended with its trailer, that every file
// of the manifest arrived whole and checked.
func (a *assembly) complete() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		return fmt.Errorf("%w: no manifest received", ErrTruncated)
	}
	for i, fsx := range a.files {
		if fsx == nil || !fsx.done {
			return fmt.Errorf("%w: the streams ended without all of %s; retry the transfer", ErrTruncated, a.m.Entries[i].Path)
		}
	}
	return nil
}

// closeAll closes every staged file still open and the root.
func (a *assembly) closeAll() {
	a.closeOnce.Do(a.closeFiles)
}

func (a *assembly) closeFiles() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, fsx := range a.files {
		if fsx != nil && fsx.f != nil {
			fsx.f.Close()
			fsx.f = nil
		}
	}
	a.root.Close()
	a.dec.Close()
}

// abandon releases a file whose chunk was cut short by an error.
func (a *assembly) abandon(fsx *fileState) {
	fsx.mu.Lock()
	defer fsx.mu.Unlock()
	fsx.refs--
	if fsx.refs == 0 && fsx.f != nil {
		fsx.f.Close()
		fsx.f = nil
	}
}
