package stream

// bufList is a bounded free list of byte buffers of one size. Unlike a
// sync.Pool it is not emptied by the garbage collector, so a stream reuses
// the same few frame buffers from start to end instead of allocating (and
// zeroing) fresh ones after every collection; that matters under the agent's
// soft memory limit, where collections are frequent. It never holds more
// than its capacity; a buffer given back to a full list is dropped.
type bufList struct {
	free chan *[]byte
	size int // len of a new buffer
	cap  int // cap of a new buffer
}

func newBufList(n, size, capacity int) *bufList {
	return &bufList{free: make(chan *[]byte, n), size: size, cap: capacity}
}

// get returns a free buffer, or a new one when none is free.
func (l *bufList) get() *[]byte {
	select {
	case b := <-l.free:
		return b
	default:
		b := make([]byte, l.size, l.cap)
		return &b
	}
}

// put gives b back for reuse; a buffer smaller than the list's is dropped.
func (l *bufList) put(b *[]byte) {
	if b == nil || cap(*b) < l.cap {
		return
	}
	*b = (*b)[:l.size]
	select {
	case l.free <- b:
	default:
	}
}
