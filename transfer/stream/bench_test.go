package stream

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// benchTree writes 256 MiB of half text-like, half random data as one pages file.
func benchTree(b *testing.B, size int) (string, *Manifest) {
	b.Helper()
	src := b.TempDir()
	if err := os.WriteFile(filepath.Join(src, "pages-1.img"), mixedData(size, 7), 0o600); err != nil {
		b.Fatal(err)
	}
	m, err := BuildManifest(context.Background(), src)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	return src, m
}

// BenchmarkSend measures Send to io.Discard on 256 MiB, half text-like and
// half random, per compression level: MB/s of raw data and wire/raw ratio.
func BenchmarkSend(b *testing.B) {
	const size = 256 << 20
	src, m := benchTree(b, size)
	for _, c := range []Compression{CompressionFastest, CompressionDefault, CompressionNone} {
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(size)
			// One untimed run first: with -benchtime=1x the single timed run
			// would otherwise also pay for heap growth and encoder set-up.
			st, err := Send(context.Background(), io.Discard, src, m, SendOptions{Compression: c})
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			for b.Loop() {
				var err error
				st, err = Send(context.Background(), io.Discard, src, m, SendOptions{Compression: c})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.RawBytes)/1e6/st.Duration.Seconds(), "MB/s")
			b.ReportMetric(st.Ratio(), "ratio")
		})
	}
}
