package redis

import (
	"errors"
	"strconv"
	"strings"

	"github.com/heraldgg/herald/internal/broker"
)

// A publication travels on its topic's channel as one Pub/Sub message, built by
// the publish script:
//
//	<offset> ":" <epoch> ":" <len(user)> ":" <user> <data>
//
// offset and len(user) are decimal, epoch is hex, user and data are raw bytes
// (data runs to the end of the message), e.g. "42:9f3a…:2:bobhello".

var errBadMessage = errors.New("redis: malformed publication message")

// decodePublication parses a topic channel message of topic.
func decodePublication(topic, msg string) (broker.Publication, error) {
	off, rest, ok := strings.Cut(msg, ":")
	if !ok {
		return broker.Publication{}, errBadMessage
	}
	offset, err := strconv.ParseUint(off, 10, 64)
	if err != nil || offset == 0 {
		return broker.Publication{}, errBadMessage
	}
	epoch, rest, ok := strings.Cut(rest, ":")
	if !ok || epoch == "" {
		return broker.Publication{}, errBadMessage
	}
	ulen, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return broker.Publication{}, errBadMessage
	}
	n, err := strconv.Atoi(ulen)
	if err != nil || n < 0 || n > len(rest) {
		return broker.Publication{}, errBadMessage
	}
	return broker.Publication{
		Topic:  topic,
		Offset: offset,
		Epoch:  epoch,
		User:   rest[:n],
		Data:   []byte(rest[n:]),
	}, nil
}
