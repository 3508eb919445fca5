package nats

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Presence lives in three JetStream key/value buckets named after
// Config.Stream (shown as HERALD), each keeping one message per key. Keys are
// dot-separated tokens; <n>, <u> and <t> are a node, user and topic name in
// unpadded base64url, <inc> 16 hex digits naming one announcement of a node:
//
//	HERALD_nodes   live.<n>             the node's announcement: {"inc": …, "info": NodeInfo};
//	                                    a per-message TTL makes JetStream drop it when
//	                                    the node stops announcing
//	               inc.<n>.<inc>        this announcement may have registrations;
//	                                    deleted once they are reaped
//	HERALD_users   <u>.<n>.<inc>        the node holds the user (empty value)
//	HERALD_topics  <t>.<u>.<n>.<inc>    the user is present in the topic on the node
//
// A registration counts while live.<n> names its <inc>. An announcement that
// lapsed or was superseded never comes back, so its registrations can be
// purged by subject filter (*.<n>.<inc>) at any time without touching a newer
// announcement's. Removing one registration stores a purge marker (rollup,
// one-second TTL) on its key: an ordinary publish, pipelined like additions,
// that JetStream drops a second later.
//
// JetStream cannot make a write conditional on another key, so an update
// still in flight when its node's record expired can land after a reaper
// purged that announcement: the entry is never counted (its announcement is
// dead) but stays until the bucket is purged. The broker narrows the window
// by refusing updates once the record may have expired by its own clock.
const (
	bucketNodes  = "nodes"
	bucketUsers  = "users"
	bucketTopics = "topics"

	hdrKVOperation = "KV-Operation"
	hdrMarker      = "Nats-Marker-Reason"
	hdrRollup      = "Nats-Rollup"
	hdrTTL         = "Nats-TTL"

	// markerTTL is how long a removal's purge marker stays, the shortest
	// per-message TTL JetStream takes.
	markerTTL = "1s"
	// pipelineChunk bounds the requests one pipeline has in flight.
	pipelineChunk = 4096
	// scanBatch is how many keys one direct get returns.
	scanBatch = 1024
)

// bucketName is the key/value bucket of kind for a history stream name;
// bucket names take only letters, digits, '-' and '_'.
func bucketName(stream, kind string) string {
	b := []byte(stream)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b) + "_" + kind
}

// bucket is one presence key/value bucket.
type bucket struct {
	stream string // KV_<name>
	prefix string // $KV.<name>.
}

func newBucket(name string) bucket {
	return bucket{stream: "KV_" + name, prefix: "$KV." + name + "."}
}

// streamConfig is a key/value bucket as nats.go would make it, with one value
// per key and per-message TTLs allowed.
func (b *Broker) bucketConfig(bk bucket) jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if b.cfg.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:              bk.stream,
		Description:       "Herald presence",
		Subjects:          []string{bk.prefix + ">"},
		MaxMsgsPerSubject: 1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		Storage:           storage,
		Replicas:          b.cfg.Replicas,
		Discard:           jetstream.DiscardNew,
		Duplicates:        2 * time.Minute,
		AllowRollup:       true,
		DenyDelete:        true,
		AllowDirect:       true,
		AllowMsgTTL:       true,
	}
}

// ensureBuckets creates the presence buckets, or turns on what this broker
// needs of existing ones.
func (b *Broker) ensureBuckets(ctx context.Context) error {
	for _, bk := range []bucket{b.nodesBk, b.usersBk, b.topicsBk} {
		want := b.bucketConfig(bk)
		_, err := b.js.CreateStream(ctx, want)
		if err == nil {
			continue
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("bucket %s: %w", bk.stream, err)
		}
		s, err := b.js.Stream(ctx, bk.stream)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", bk.stream, err)
		}
		have := s.CachedInfo().Config
		if have.MaxMsgsPerSubject == 1 && have.AllowRollup && have.AllowDirect && have.AllowMsgTTL {
			continue
		}
		b.log.Warn("nats: updating a presence bucket's settings", "stream", bk.stream)
		have.MaxMsgsPerSubject, have.AllowRollup, have.AllowDirect, have.AllowMsgTTL = 1, true, true, true
		if _, err := b.js.UpdateStream(ctx, have); err != nil {
			return fmt.Errorf("bucket %s: %w", bk.stream, err)
		}
	}
	return nil
}

// errNoStream is a publish JetStream did not answer because no stream takes
// the subject: the buckets are gone (a server lost its store).
var errNoStream = errors.New("nats: no stream for the subject")

// pubAck is JetStream's answer to a publish.
type pubAck struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
	Seq uint64 `json:"seq"`
}

// checkAck turns a publish's reply into an error.
func checkAck(m *natsgo.Msg) error {
	if m.Header.Get(statusHdr) == "503" {
		return errNoStream
	}
	var ack pubAck
	if err := json.Unmarshal(m.Data, &ack); err != nil {
		return fmt.Errorf("nats: publish ack: %w", err)
	}
	if ack.Error != nil {
		return fmt.Errorf("nats: publish: %d %s", ack.Error.ErrCode, ack.Error.Description)
	}
	return nil
}

// pipeline sends msgs as requests, each with its own reply subject, in
// chunks of pipelineChunk, and returns the replies in order: one round trip
// per chunk instead of one per message. The server handles a connection's
// messages in order, so to one stream they apply in order.
func (b *Broker) pipeline(ctx context.Context, msgs []*natsgo.Msg) ([]*natsgo.Msg, error) {
	ex := b.mux.open(min(len(msgs), pipelineChunk))
	defer ex.end()
	prefix := ex.reply + "."
	replies := make([]*natsgo.Msg, len(msgs))
	for from := 0; from < len(msgs); from += pipelineChunk {
		to := min(from+pipelineChunk, len(msgs))
		for i := from; i < to; i++ {
			msgs[i].Reply = prefix + strconv.Itoa(i)
			if err := b.nc.PublishMsg(msgs[i]); err != nil {
				return nil, err
			}
		}
		for got := from; got < to; {
			r, err := ex.recv(ctx)
			if err != nil {
				return nil, err
			}
			i, err := strconv.Atoi(strings.TrimPrefix(r.Subject, prefix))
			if err != nil || i < from || i >= to || replies[i] != nil {
				continue
			}
			replies[i] = r
			got++
		}
	}
	return replies, nil
}

// purge removes every message of bk whose subject matches filter, on the
// server: one request however many keys match.
func (b *Broker) purge(ctx context.Context, bk bucket, filter string) error {
	req, _ := json.Marshal(map[string]string{"filter": filter})
	m, err := b.nc.RequestWithContext(ctx, b.apiPrefix+"STREAM.PURGE."+bk.stream, req)
	if err != nil {
		return err
	}
	var resp struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return fmt.Errorf("nats: purge reply: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == int(jetstream.JSErrCodeStreamNotFound) {
			return nil // nothing to purge
		}
		return fmt.Errorf("nats: purge %s: %d %s", filter, resp.Error.ErrCode, resp.Error.Description)
	}
	return nil
}

// entry is one key's value found by scan.
type entry struct {
	key  string // without the bucket's prefix
	data []byte
}

// scan returns the value of every key of bk matching filter (a subject under
// the bucket's prefix), with direct gets. Purge markers are skipped.
// complete is false when the keys were read in several parts: one request is
// answered in isolation from writes, several are not.
//
// One "last message per subject" request finds the keys through the
// stream's subject index, however many other keys the bucket holds; a
// paged scan of the stream in sequence order took 8ms per UserNodes among
// 300,000 users. The server answers at most maxMultiLast keys that way, so
// a filter matching more (a crowded topic) is read in pages.
func (b *Broker) scan(ctx context.Context, bk bucket, filter string) (entries []entry, complete bool, err error) {
	// One batch and its end-of-batch status are outstanding at a time.
	ex := b.mux.open(scanBatch + 1)
	defer ex.end()
	req, _ := json.Marshal(multiLastRequest{MultiLast: []string{bk.prefix + filter}, Batch: maxMultiLast})
	entries, _, _, err = b.getBatch(ctx, ex, bk, req)
	if !errors.Is(err, errTooMany) {
		return entries, err == nil, err
	}
	entries = entries[:0]
	for from := uint64(1); ; {
		req, _ := json.Marshal(directGetRequest{Seq: from, NextFor: bk.prefix + filter, Batch: scanBatch})
		var n int
		var lastSeq uint64
		if entries, n, lastSeq, err = b.getBatch(ctx, ex, bk, req, entries...); err != nil {
			return nil, false, err
		}
		if n < scanBatch || lastSeq == 0 {
			return entries, false, nil
		}
		from = lastSeq + 1
	}
}

// multiLastRequest asks for the last message of every subject matching one
// of MultiLast.
type multiLastRequest struct {
	MultiLast []string `json:"multi_last"`
	Batch     int      `json:"batch"`
}

const (
	// maxMultiLast is the most subjects nats-server answers a multi_last
	// request for; past it, it answers 413.
	maxMultiLast = 1024
)

var errTooMany = errors.New("nats: direct get: too many results")

// getBatch sends one direct get request and appends the entries answered to
// entries, returning how many messages came and the last one's sequence.
func (b *Broker) getBatch(ctx context.Context, ex *exchange, bk bucket, req []byte, entries ...entry) ([]entry, int, uint64, error) {
	if err := b.nc.PublishRequest(b.apiPrefix+"DIRECT.GET."+bk.stream, ex.reply, req); err != nil {
		return nil, 0, 0, err
	}
	n, lastSeq := 0, uint64(0)
	for {
		m, err := ex.recv(ctx)
		if err != nil {
			return nil, 0, 0, err
		}
		switch status := m.Header.Get(statusHdr); status {
		case "":
		case "204", "404": // end of batch; nothing (more) stored
			return entries, n, lastSeq, nil
		case "413":
			return entries, n, lastSeq, errTooMany
		case "503":
			return nil, 0, 0, errNoStream
		default:
			return nil, 0, 0, fmt.Errorf("nats: direct get: status %s %s", status, m.Header.Get(descrHdr))
		}
		n++
		lastSeq, _ = strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if m.Header.Get(hdrKVOperation) != "" || m.Header.Get(hdrMarker) != "" {
			continue
		}
		subj := m.Header.Get(jetstream.SubjectHeader)
		if !strings.HasPrefix(subj, bk.prefix) {
			continue
		}
		entries = append(entries, entry{key: subj[len(bk.prefix):], data: m.Data})
	}
}

// untoken decodes a key token made by token.
func untoken(s string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err == nil
}
