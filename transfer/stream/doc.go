// Package stream moves a checkpoint directory (CRIU images, tar layers, JSON)
// from one agent to another over io.Writer/io.Reader pairs: framed, zstd
// compressed, checksummed end to end, and streaming with bounded memory.
//
// # Usage
//
// Sender:
//
//	m, err := stream.BuildManifest(ctx, "/var/lib/ferry/ckpt/np-7")
//	if err != nil { ... }
//	st, err := stream.Send(ctx, ch, "/var/lib/ferry/ckpt/np-7", m, stream.DefaultSendOptions())
//
// Receiver:
//
//	m, st, err := stream.Receive(ctx, ch, "/var/lib/ferry/incoming/np-7", stream.DefaultReceiveOptions())
//	// err == nil: the directory exists, every file has its manifest size and SHA-256.
//	// err != nil: the directory does not exist; errors.Is(err, stream.ErrChecksum) etc.
//
// Over several channels, SendParallel and ReceiveParallel take a slice of
// writers and readers; large files are cut into chunks that spread over all
// of them.
//
// # Guarantees
//
//   - Nothing received is trusted: the manifest is validated (no absolute
//     paths, no "..", no duplicates, sizes and counts bounded by Limits) before
//     anything is created, every frame length is bounded before memory is
//     spent, and files are created through an os.Root on the staging directory.
//   - Every frame carries a CRC32C, so damage is reported at the frame where
//     it happened (ErrCorrupt); every chunk is checked against the SHA-256
//     that the sender took as it read it (ErrChecksum), and every file against
//     the manifest's size (ErrSize) and, when the manifest has one, its
//     SHA-256 (ErrChecksum); a stream that ends before its trailer is
//     ErrTruncated. Errors name the file and the remedy.
//   - ListManifest makes a manifest without digests (sizes only), so the
//     sender does not read every file once before it starts: the chunk
//     sums alone check every byte end to end, and the receiver does not read
//     a chunked file again at the end either.
//   - Receive writes into a temporary directory beside the destination and
//     renames it into place only when every stream ended with its trailer
//     and every file checked. On error nothing is left and the destination
//     does not exist, so a partial checkpoint can never be restored.
//   - Memory per stream is bounded by SendOptions.Depth frames of
//     SendOptions.FrameSize (raw plus compressed) on the sender and a few
//     frames on the receiver; no file is ever held whole.
//
// # Wire format (version 2, big-endian)
//
//	header   "FERRY-STREAM" version:u16
//	frame    type:u8 length:u32 payload crc32c(type,length,payload):u32
//	stream   header STREAM MANIFEST { CHUNK {DATA|ZSTD} CHUNK_END } TRAILER   (or ABORT)
//
//	STREAM     transfer id [16], stream index u16, stream count u16, chunk size u64,
//	           sha256 of the MANIFEST payload [32]
//	MANIFEST   the manifest JSON (bounded by Limits.MaxManifestBytes)
//	CHUNK      file index u32, offset u64, length u64
//	DATA       raw bytes (compression did not save 1/64 of the frame)
//	ZSTD       raw length u32 + one zstd frame that must decode to exactly that
//	CHUNK_END  file index u32, bytes sent u64, SHA-256 of the chunk's bytes [32]
//	TRAILER    chunks u64, raw bytes u64 of this stream
//	ABORT      reason; the sender gave up (ErrAborted)
//
// Each data frame is compressed on its own (zstd EncodeAll), which keeps the
// decoder's memory bounded by the frame size, lets the sender store frames of
// random memory pages uncompressed, and lets a pool of workers (shared by all
// streams of a send) compress frames in parallel while a per-stream writer
// emits them in order.
//
// Every stream carries the whole manifest, not a reference to stream 0: the
// manifest is small next to the data, each stream can be checked on its own
// with no ordering between channels, and the receiver may start on whichever
// stream speaks first. The streams of one transfer must agree on the transfer
// id, stream count, chunk size and manifest digest, and each index must come
// exactly once. Chunks lie at fixed offsets (multiples of the chunk size; 0
// means whole files, as Send does), so the receiver checks each chunk's
// geometry against the manifest, refuses duplicates, and writes it with
// WriteAt. Each chunk is hashed as it arrives and compared with its
// CHUNK_END. Where the manifest has a file's digest, a file sent as one
// chunk is checked with that same hash; a file cut in chunks is hashed again
// by re-reading it from the staging directory once its last chunk is in.
//
// The sender reads the last chunk of every file one byte past the manifest's
// size, so a file that grew or shrank since BuildManifest is reported by both
// sides as ErrSize instead of surfacing later as a checksum mismatch.
//
// # Figures
//
// BenchmarkSend, 256 MiB (half text-like log lines, half random) from page
// cache to io.Discard, 2 cores (AMD EPYC VM), -benchtime=1x after one warm-up:
//
//	fastest  360-640 MB/s  ratio 0.675   (the default)
//	default  215-395 MB/s  ratio 0.666
//	none     5-9 GB/s      ratio 1.000
//
// (ranges over several runs on a shared machine).
//
// SpeedFastest is the default: the better level gains about 1% of size here
// and costs 1.4-2x the CPU, which a stop-copy migration spends while the
// container is frozen. Send and Receive of the same 256 MiB through an
// io.Pipe in one process (both sides sharing the 2 cores, writing to disk)
// ran at 115-140 MB/s and peaked at about 30 MiB of heap in use (VmHWM of
// the whole test process 29 MB when run alone).
//
// sshx BenchmarkStream runs the whole path as agents do (SendParallel over
// SSH connections into ReceiveParallel, both in one process on 2 cores, 256
// MiB of memload's half text, half random pages). Its CPU profile: SHA-256
// (one pass per side) about a third, system calls (file read and write, TCP)
// a quarter, copies a tenth (most in x/crypto/ssh, which copies every packet
// it reads into a new buffer), zstd about a tenth, AES-GCM and CRC32C the
// rest. Frame buffers sit on bounded free lists (buflist.go), not in
// sync.Pools that every collection empties: CPU per transfer 1524-1724 ms
// before, 1290-1584 ms after on a busy machine; about 930 ms on a quieter
// one, at 490-530 MB/s over 2 connections. Frame sizes of 256 KiB and 1 MiB
// measured the same; a 64 MiB GOMEMLIMIT cost 0-5% against none.
package stream
