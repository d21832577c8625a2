package images

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// maxZstdWindow bounds the memory a zstd stream may ask for. Image tools
// use windows of 8 MiB or less.
const maxZstdWindow = 128 << 20

var (
	gzipMagic  = []byte{0x1f, 0x8b}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	bzip2Magic = []byte("BZh")
)

// decompress sniffs the first bytes of r and returns a reader of the
// uncompressed stream (gzip, zstd, or r itself for a plain tar), and a
// function that releases the decoder. what names r in errors.
func decompress(r io.Reader, what string) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(len(xzMagic))
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: gzip: %w", ErrBadArchive, what, err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: zstd: %w", ErrBadArchive, what, err)
		}
		return zr, zr.Close, nil
	case bytes.HasPrefix(head, xzMagic), bytes.HasPrefix(head, bzip2Magic):
		return nil, nil, fmt.Errorf("%w: %s is xz or bzip2 compressed, which is not supported; "+
			"decompress it (xz -d, bunzip2) or recompress it with gzip or zstd", ErrBadArchive, what)
	}
	return br, func() {}, nil
}
