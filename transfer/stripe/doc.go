// Package stripe carries one ordered byte stream over several lanes (SSH
// channels on separate connections) at once, so that a stream is not bound by
// what one SSH connection can encrypt and carry.
//
// The sender cuts the stream into frames as it reads them (a frame is
// whatever one read returned, up to Options.FrameSize, so a request/reply
// protocol such as CRIU's page server is never held back), and sends frame k
// on lane k mod N. Each frame carries its sequence number, its raw and wire
// lengths, and the CRC32C of its raw bytes; a frame may be zstd-compressed,
// and compression runs on several workers. The receiver reads every lane in
// its own goroutine (decompressing and checking there, so that is parallel
// too) and writes the frames to its destination strictly in sequence order.
// Both ends hash the whole stream with SHA-256 and return the sum, for the
// caller to compare end to end.
//
// Flow control: every lane is FIFO and frame k is always on lane k mod N, so
// the receiver only ever waits for the lane that holds the next frame, and a
// sender blocked on a full lane is waiting for exactly the frames the
// receiver will take next. Memory is bounded on both sides by
// Options.Depth frames per lane. After the last frame the sender writes an
// end frame, carrying the frame count, on every lane.
//
// Errors end the transfer at once; the caller closes the source and the
// lanes, which ends the goroutines still blocked in them.
package stripe
