package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// BoltStore is a raft LogStore and StableStore in one bbolt file. Every
// write is one bbolt transaction, synced to disk before it returns. It is safe
// for concurrent use (bbolt serialises writers).
type BoltStore struct {
	db *bolt.DB
}

var (
	bucketLogs   = []byte("logs")
	bucketStable = []byte("stable")
)

var _ raft.LogStore = (*BoltStore)(nil)
var _ raft.StableStore = (*BoltStore)(nil)

// OpenBoltStore opens or creates the bbolt file at path. It fails after 2 s
// if another process holds the file (another agent on the same data dir).
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("open raft store %s (is another agent using this data dir?): %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLogs, bucketStable} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init raft store %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// Close closes the file.
func (b *BoltStore) Close() error { return b.db.Close() }

func u64(v uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], v)
	return k[:]
}

// FirstIndex implements raft.LogStore.
func (b *BoltStore) FirstIndex() (uint64, error) {
	return b.edgeIndex(true)
}

// LastIndex implements raft.LogStore.
func (b *BoltStore) LastIndex() (uint64, error) {
	return b.edgeIndex(false)
}

func (b *BoltStore) edgeIndex(first bool) (uint64, error) {
	var idx uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		var k []byte
		if first {
			k, _ = c.First()
		} else {
			k, _ = c.Last()
		}
		if k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// GetLog implements raft.LogStore.
func (b *BoltStore) GetLog(index uint64, l *raft.Log) error {
	return b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogs).Get(u64(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		l.Index = index
		return decodeLog(v, l)
	})
}

// StoreLog implements raft.LogStore.
func (b *BoltStore) StoreLog(l *raft.Log) error { return b.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore, in one transaction.
func (b *BoltStore) StoreLogs(logs []*raft.Log) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketLogs)
		for _, l := range logs {
			if err := bk.Put(u64(l.Index), encodeLog(l)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRange implements raft.LogStore; min and max are inclusive.
func (b *BoltStore) DeleteRange(lo, hi uint64) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		for k, _ := c.Seek(u64(lo)); k != nil; k, _ = c.Next() {
			if binary.BigEndian.Uint64(k) > hi {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Set implements raft.StableStore.
func (b *BoltStore) Set(key, val []byte) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStable).Put(key, val)
	})
}

// Get implements raft.StableStore. A missing key returns an empty value and
// no error, as raft expects.
func (b *BoltStore) Get(key []byte) ([]byte, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketStable).Get(key); v != nil {
			out = append([]byte{}, v...)
		}
		return nil
	})
	return out, err
}

// SetUint64 implements raft.StableStore.
func (b *BoltStore) SetUint64(key []byte, val uint64) error { return b.Set(key, u64(val)) }

// GetUint64 implements raft.StableStore.
func (b *BoltStore) GetUint64(key []byte) (uint64, error) {
	v, err := b.Get(key)
	if err != nil || len(v) == 0 {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raft stable key %q holds %d bytes, not 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Log encoding: version byte, term, type, appended-at (unix ns), then data
// and extensions, each as uvarint length and bytes.
const logEncodingVersion = 1

func encodeLog(l *raft.Log) []byte {
	buf := make([]byte, 0, 1+8+1+8+2*binary.MaxVarintLen64+len(l.Data)+len(l.Extensions))
	buf = append(buf, logEncodingVersion)
	buf = binary.BigEndian.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	buf = binary.BigEndian.AppendUint64(buf, uint64(at))
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	return append(buf, l.Extensions...)
}

var errBadLog = errors.New("corrupt raft log entry")

func decodeLog(v []byte, l *raft.Log) error {
	if len(v) < 18 || v[0] != logEncodingVersion {
		return errBadLog
	}
	l.Term = binary.BigEndian.Uint64(v[1:9])
	l.Type = raft.LogType(v[9])
	l.AppendedAt = time.Time{}
	if at := int64(binary.BigEndian.Uint64(v[10:18])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	rest := v[18:]
	var err error
	if l.Data, rest, err = readBytes(rest); err != nil {
		return err
	}
	if l.Extensions, _, err = readBytes(rest); err != nil {
		return err
	}
	return nil
}

// readBytes reads a uvarint-prefixed byte string, copying it out of bbolt's
// memory map (valid only during the transaction).
func readBytes(b []byte) ([]byte, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, errBadLog
	}
	if n == 0 {
		return nil, b[k:], nil
	}
	out := append([]byte(nil), b[k:k+int(n)]...)
	return out, b[k+int(n):], nil
}
