package agent

import (
	"context"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/transfer/sshx"
)

func TestLaneGatherer(t *testing.T) {
	var g laneGatherer
	for _, tc := range []struct {
		name        string
		lane, lanes int
	}{{"negative lane", -1, 2}, {"lane past the count", 2, 2}, {"no lanes", 0, 0}, {"too many lanes", 0, sshx.MaxSlots + 1}} {
		if _, _, err := g.join("x", tc.lane, tc.lanes, &sshx.Channel{}); err == nil {
			t.Errorf("%s: joined", tc.name)
		}
	}
	// Lanes arriving concurrently: exactly one completes the group, the others wait until it is done.
	const n = 4
	chans := make([]*sshx.Channel, n)
	for i := range chans {
		chans[i] = &sshx.Channel{}
	}
	var wg sync.WaitGroup
	lasts := make(chan *laneGroup, n)
	for i := range n {
		wg.Go(func() {
			grp, last, err := g.join("t1", i, n, chans[i])
			if err != nil {
				t.Error(err)
				return
			}
			if last {
				lasts <- grp
				close(grp.done)
				return
			}
			if !g.wait(context.Background(), "t1", grp) {
				t.Error("a lane gave up on a complete group")
			}
		})
	}
	wg.Wait()
	close(lasts)
	var got []*laneGroup
	for grp := range lasts {
		got = append(got, grp)
	}
	if len(got) != 1 {
		t.Fatalf("%d lanes completed the group", len(got))
	}
	for i, c := range got[0].lanes {
		if c != chans[i] {
			t.Fatalf("lane %d is another channel", i)
		}
	}
	// The same lane twice is refused.
	if _, _, err := g.join("t2", 0, 2, chans[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.join("t2", 0, 2, chans[1]); err == nil {
		t.Fatal("lane 0 joined twice")
	}
}
