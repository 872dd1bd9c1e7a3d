package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// On-disk record layout, little endian:
//
//	magic   uint32  recMagic
//	length  uint32  payload bytes
//	seq     uint64  spool sequence number, increasing by one per record
//	crc     uint32  CRC32C over length, seq and payload
//	payload [length]byte
//
// The sequence number lets the ack log name a record independently of where
// it sits in a file, so repairing a damaged segment never shifts what is acked.
const (
	recMagic  = 0xD51F7A5C
	headerLen = 20
	// MaxRecord bounds one payload: a header claiming more is damage, not a record.
	MaxRecord = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors Decode reports; each names the kind of damage found.
var (
	ErrShort    = errors.New("record cut short")
	ErrMagic    = errors.New("bad record magic")
	ErrLength   = errors.New("record length out of range")
	ErrChecksum = errors.New("record checksum mismatch")
)

// Record is one decoded spool record.
type Record struct {
	Seq     uint64
	Payload []byte // aliases the buffer given to Decode
}

// EncodedLen is the size on disk of a record with n payload bytes.
func EncodedLen(n int) int { return headerLen + n }

// AppendRecord appends the encoding of (seq, payload) to dst.
func AppendRecord(dst []byte, seq uint64, payload []byte) []byte {
	var h [headerLen]byte
	binary.LittleEndian.PutUint32(h[0:], recMagic)
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:], seq)
	binary.LittleEndian.PutUint32(h[16:], checksum(h[4:16], payload))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

func checksum(lenSeq, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, lenSeq)
	return crc32.Update(c, castagnoli, payload)
}

// Decode reads the record at the start of b and returns it with its encoded size.
// It never reads past b and never trusts the length field before checking it.
func Decode(b []byte) (Record, int, error) {
	if len(b) < headerLen {
		if len(b) >= 4 && binary.LittleEndian.Uint32(b) != recMagic {
			return Record{}, 0, ErrMagic
		}
		return Record{}, 0, ErrShort
	}
	if binary.LittleEndian.Uint32(b[0:]) != recMagic {
		return Record{}, 0, ErrMagic
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if n > MaxRecord {
		return Record{}, 0, fmt.Errorf("%w: %d bytes (max %d)", ErrLength, n, MaxRecord)
	}
	end := headerLen + int(n)
	if len(b) < end {
		return Record{}, 0, ErrShort
	}
	if checksum(b[4:16], b[headerLen:end]) != binary.LittleEndian.Uint32(b[16:]) {
		return Record{}, 0, ErrChecksum
	}
	return Record{Seq: binary.LittleEndian.Uint64(b[8:]), Payload: b[headerLen:end:end]}, end, nil
}
