// Command memload is a test workload: it holds a given amount of memory (half text-like, half random, so that
// compression sees both kinds) and prints, at each tick, a counter and the sha256 of that memory. A checkpoint
// and restore (or a migration) that keeps the memory intact keeps the sum the same and the counter going on.
//
//	memload -mib 64 -interval 100ms -sum-every 10
//	ready mib=64 sum=3f2a...
//	tick=1
//	...
//	tick=10 sum=3f2a...
//
// Each line carries the wall-clock time in microseconds (t=...), so that the gap a checkpoint or migration
// leaves in the output can be measured from the workload's own view.
//
// It is built static (CGO_ENABLED=0) and put into the busybox test image.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"time"
)

func main() {
	mib := flag.Int("mib", 64, "MiB of memory to hold")
	interval := flag.Duration("interval", time.Second, "time between ticks")
	sumEvery := flag.Int("sum-every", 1, "print the memory's sum every N ticks (hashing is not free)")
	seed := flag.Uint64("seed", 1, "seed of the random half")
	flag.Parse()
	if *mib <= 0 || *mib > 1<<16 {
		fmt.Fprintln(os.Stderr, "memload: -mib must be between 1 and 65536")
		os.Exit(2)
	}
	if *sumEvery < 1 {
		*sumEvery = 1
	}
	buf := fill(*mib<<20, *seed)
	debug.FreeOSMemory() // give back what filling left behind: the process holds about -mib MiB
	fmt.Printf("ready mib=%d sum=%s t=%d\n", *mib, sum(buf), time.Now().UnixMicro())
	for tick := 1; ; tick++ {
		time.Sleep(*interval)
		if tick%*sumEvery == 0 {
			fmt.Printf("tick=%d sum=%s t=%d\n", tick, sum(buf), time.Now().UnixMicro())
		} else {
			fmt.Printf("tick=%d t=%d\n", tick, time.Now().UnixMicro())
		}
	}
}

// fill returns n bytes: the first half lines of text, the second half pseudo-random bytes.
func fill(n int, seed uint64) []byte {
	buf := make([]byte, n)
	half := n / 2
	for off, line := 0, 0; off < half; line++ {
		off += copy(buf[off:half], fmt.Sprintf("line %08d: the quick brown fox jumps over the lazy dog, again and again\n", line))
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := half; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			buf[i+j] = byte(v >> (8 * j))
		}
	}
	return buf
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}
