package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Raw-TCP framing: every frame, in both directions, is
//
//	+--------+--------+--------+--------+---------------------+
//	|  payload length, uint32 big-endian |  payload (envelope) |
//	+--------+--------+--------+--------+---------------------+
//
// The payload is one envelope in the connection's codec (see DetectCodec). A length
// of zero is a keep-alive that carries nothing.

// TCPHeaderLen is the size of the length prefix.
const TCPHeaderLen = 4

// ErrFrameTooLarge is returned when a frame's length exceeds the configured maximum.
// The length is checked before any buffer is allocated for it.
var ErrFrameTooLarge = errors.New("protocol: frame too large")

// AppendTCPFrame appends the length prefix and payload to dst.
func AppendTCPFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// TCPReader splits a byte stream into frames. It is fed whatever the socket
// returned and holds only the incomplete tail between calls, so an idle connection
// keeps no buffer. Not safe for concurrent use.
type TCPReader struct {
	max     int
	partial []byte
}

// NewTCPReader returns a reader that rejects frames longer than max bytes.
func NewTCPReader(max int) *TCPReader { return &TCPReader{max: max} }

// Feed consumes data and calls fn for every complete frame, in order. The frame
// slice is only valid during the call. It stops at the first error from fn or at
// a length prefix over the maximum (ErrFrameTooLarge, wrapped).
func (r *TCPReader) Feed(data []byte, fn func(frame []byte) error) error {
	if len(r.partial) > 0 {
		need := TCPHeaderLen
		if len(r.partial) >= TCPHeaderLen {
			need += int(binary.BigEndian.Uint32(r.partial))
		} else if len(r.partial)+len(data) >= TCPHeaderLen {
			var hdr [TCPHeaderLen]byte
			n := copy(hdr[:], r.partial)
			copy(hdr[n:], data)
			size := binary.BigEndian.Uint32(hdr[:])
			if int64(size) > int64(r.max) {
				r.partial = nil
				return fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, size, r.max)
			}
			need += int(size)
		} else {
			r.partial = append(r.partial, data...)
			return nil
		}
		take := min(need-len(r.partial), len(data))
		if cap(r.partial) < need {
			grown := make([]byte, len(r.partial), need)
			copy(grown, r.partial)
			r.partial = grown
		}
		r.partial = append(r.partial, data[:take]...)
		data = data[take:]
		if len(r.partial) < need {
			return nil
		}
		frame := r.partial[TCPHeaderLen:need]
		r.partial = nil
		if err := fn(frame); err != nil {
			return err
		}
	}
	for len(data) >= TCPHeaderLen {
		size := binary.BigEndian.Uint32(data)
		if int64(size) > int64(r.max) {
			return fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, size, r.max)
		}
		end := TCPHeaderLen + int(size)
		if len(data) < end {
			break
		}
		if err := fn(data[TCPHeaderLen:end]); err != nil {
			return err
		}
		data = data[end:]
	}
	if len(data) > 0 {
		if len(data) >= TCPHeaderLen {
			need := TCPHeaderLen + int(binary.BigEndian.Uint32(data))
			r.partial = make([]byte, 0, need)
		}
		r.partial = append(r.partial, data...)
	}
	return nil
}

// Buffered reports how many bytes of an incomplete frame are held.
func (r *TCPReader) Buffered() int { return len(r.partial) }

// ReadTCPFrame reads one frame from a blocking reader into buf (grown as needed)
// and returns the payload. It is the client side of the framing.
func ReadTCPFrame(rd io.Reader, buf []byte, max int) ([]byte, error) {
	if br, ok := rd.(*bufio.Reader); ok {
		return readTCPFrameBuffered(br, buf, max)
	}
	var hdr [TCPHeaderLen]byte
	if _, err := io.ReadFull(rd, hdr[:]); err != nil {
		return nil, err
	}
	return readTCPPayload(rd, binary.BigEndian.Uint32(hdr[:]), buf, max)
}

// readTCPFrameBuffered is ReadTCPFrame for a client's own buffered reader: the
// length prefix is read where it lies rather than copied into a header that
// would escape to the heap, one allocation per frame at millions of frames a
// second.
func readTCPFrameBuffered(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	hdr, err := br.Peek(TCPHeaderLen)
	if err != nil {
		if len(hdr) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr)
	if _, err := br.Discard(TCPHeaderLen); err != nil {
		return nil, err
	}
	return readTCPPayload(br, size, buf, max)
}

func readTCPPayload(rd io.Reader, size uint32, buf []byte, max int) ([]byte, error) {
	if int64(size) > int64(max) {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, size, max)
	}
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(rd, buf); err != nil {
		return nil, err
	}
	return buf, nil
}
