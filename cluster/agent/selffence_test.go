package agent

import "testing"

func TestCanElectWithout(t *testing.T) {
	tests := []struct {
		voters int
		self   bool
		want   bool
	}{
		{1, true, false}, // alone: it is the cluster
		{2, true, false}, // the other one alone is no majority
		{3, true, true},
		{4, true, true},
		{5, true, true},
		{2, false, true}, // a non-voter: the voters decide without it
	}
	for _, tt := range tests {
		if got := canElectWithout(tt.voters, tt.self); got != tt.want {
			t.Errorf("canElectWithout(%d, %v) = %v, want %v", tt.voters, tt.self, got, tt.want)
		}
	}
}
