package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestRejected(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"name taken", errorf(ErrExists, "container %q exists", "np"), true},
		{"unknown node, after a round trip to the leader", DecodeError(EncodeError(errorf(ErrUnknownNode, "no vg-9"))), true},
		{"wrapped refusal", fmt.Errorf("placing: %w", errorf(ErrNoCapacity, "full")), true},
		{"leadership lost", errorf(ErrLeadershipLost, "lost it"), false},
		{"no leader until the deadline", fmt.Errorf("%w (%w)", errorf(ErrNoLeader, "none"), context.DeadlineExceeded), false},
		{"commit wait cut short", fmt.Errorf("waiting for place-container to commit: %w", context.DeadlineExceeded), false},
		{"forward lost", errors.New("forwarding to vg-1: connection reset"), false},
		{"internal", errorf(ErrInternal, "boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Rejected(tt.err); got != tt.want {
				t.Fatalf("Rejected(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
