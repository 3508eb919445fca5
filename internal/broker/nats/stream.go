package nats

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldgg/herald/internal/broker"
)

// Subjects, under Config.SubjectPrefix (shown as "herald"), where <t> is the
// topic and <n> the node name, each in unpadded base64url so any string is one
// valid token:
//
//	herald.h.<t>  publications, captured by the stream
//	herald.l.<t>  the stream republishes each stored publication here; live delivery
//	herald.c      Broadcast
//	herald.n.<n>  SendNode, as a request the node answers once it took the message
//
// Each stored publication carries its position in headers:
//
//	Herald-Offset: 42       decimal; 0 marks an epoch marker (see History)
//	Herald-Epoch: 9f3a…     hex
//	Herald-User: bob        only when set
const (
	hdrOffset = "Herald-Offset"
	hdrEpoch  = "Herald-Epoch"
	hdrUser   = "Herald-User"

	// statusHdr and descrHdr carry a status reply's code and text, as
	// nats.go decodes them.
	statusHdr = "Status"
	descrHdr  = "Description"

	// maxTopicLen keeps subjects well inside NATS's control-line limit.
	maxTopicLen = 1024
)

// errStale is a history read that did not reach the stream's last message for
// the topic: a replica answered that had not caught up.
var errStale = errors.New("nats: history read behind the stream")

func token(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// streamConfig is the stream this broker needs. FirstSeq is random so that
// sequence numbers of a recreated stream never match ones a node remembers
// from the old stream, which would let a stale expected-sequence check pass.
func (b *Broker) streamConfig() jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if b.cfg.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:              b.cfg.Stream,
		Description:       "Herald topic history",
		Subjects:          []string{b.histPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: int64(b.cfg.HistorySize),
		MaxAge:            b.cfg.HistoryTTL,
		Storage:           storage,
		Replicas:          b.cfg.Replicas,
		AllowDirect:       true,
		RePublish:         &jetstream.RePublish{Source: b.histPrefix + ">", Destination: b.livePrefix + ">"},
		FirstSeq:          1 + rand.Uint64N(1<<52),
	}
}

// ensureStream creates the stream, or brings the settings this broker owns up
// to date on an existing one.
func (b *Broker) ensureStream(ctx context.Context) error {
	want := b.streamConfig()
	_, err := b.js.CreateStream(ctx, want)
	if err == nil || !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return err
	}
	s, err := b.js.Stream(ctx, b.cfg.Stream)
	if err != nil {
		return err
	}
	have := s.CachedInfo().Config
	if slices.Equal(have.Subjects, want.Subjects) && have.MaxMsgsPerSubject == want.MaxMsgsPerSubject &&
		have.MaxAge == want.MaxAge && have.AllowDirect && have.RePublish != nil &&
		*have.RePublish == *want.RePublish && have.Discard == want.Discard && have.Replicas == want.Replicas {
		return nil
	}
	b.log.Warn("nats: updating the history stream's settings", "stream", b.cfg.Stream,
		"history_size", want.MaxMsgsPerSubject, "history_ttl", want.MaxAge, "replicas", want.Replicas)
	have.Subjects, have.MaxMsgsPerSubject, have.MaxAge = want.Subjects, want.MaxMsgsPerSubject, want.MaxAge
	have.AllowDirect, have.RePublish, have.Discard, have.Replicas = true, want.RePublish, want.Discard, want.Replicas
	have.Metadata = maps.Clone(have.Metadata)
	_, err = b.js.UpdateStream(ctx, have)
	return err
}

// tip is a topic's last stored message: its stream sequence and position.
type tip struct {
	seq   uint64
	pos   broker.Position
	valid bool // false when the topic has no message
}

// msgGetResponse is the JetStream API's answer to a message get.
type msgGetResponse struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
	Message *struct {
		Seq    uint64 `json:"seq"`
		Header []byte `json:"hdrs"`
	} `json:"message"`
}

// last reads the topic's last message from the stream leader. Direct gets may
// be answered by a replica that is behind, which History must not be.
func (b *Broker) last(ctx context.Context, topic string) (tip, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": b.histPrefix + token(topic)})
	m, err := b.nc.RequestWithContext(ctx, b.apiPrefix+"STREAM.MSG.GET."+b.cfg.Stream, req)
	if err != nil {
		return tip{}, err
	}
	var resp msgGetResponse
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return tip{}, fmt.Errorf("nats: message get reply: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
			return tip{}, nil
		}
		if resp.Error.ErrCode == int(jetstream.JSErrCodeStreamNotFound) {
			return tip{}, jetstream.ErrStreamNotFound
		}
		return tip{}, fmt.Errorf("nats: message get: %d %s", resp.Error.ErrCode, resp.Error.Description)
	}
	if resp.Message == nil {
		return tip{}, errors.New("nats: message get reply without a message")
	}
	var hdr natsgo.Header
	if len(resp.Message.Header) > 0 {
		if hdr, err = natsgo.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return tip{}, fmt.Errorf("nats: message get headers: %w", err)
		}
	}
	pos, ok := position(hdr)
	if !ok {
		// Not written by Herald: history before it is not ours to number.
		return tip{seq: resp.Message.Seq}, nil
	}
	return tip{seq: resp.Message.Seq, pos: pos, valid: true}, nil
}

// position reads a stored message's position from its headers.
func position(h natsgo.Header) (broker.Position, bool) {
	epoch := h.Get(hdrEpoch)
	off, err := strconv.ParseUint(h.Get(hdrOffset), 10, 64)
	if err != nil || epoch == "" {
		return broker.Position{}, false
	}
	return broker.Position{Offset: off, Epoch: epoch}, true
}

// directGetRequest asks for a batch of a subject's messages.
type directGetRequest struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
	UpToSeq uint64 `json:"up_to_seq"`
}

// fetch reads every retained publication of topic's epoch at, up to and
// including the message at sequence at.seq, in offset order, with batched
// direct gets. It fails with errStale if the answers did not reach at.seq.
func (b *Broker) fetch(ctx context.Context, topic string, at tip) ([]broker.Publication, error) {
	inbox := b.nc.NewInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	var pubs []broker.Publication
	// A batch of HistorySize+1 (a marker may take a slot) usually holds all;
	// a stream trimmed with a larger size by another node takes more.
	batch := b.cfg.HistorySize + 1
	for from := uint64(1); ; {
		req, _ := json.Marshal(directGetRequest{Seq: from, NextFor: b.histPrefix + token(topic), Batch: batch, UpToSeq: at.seq})
		if err := b.nc.PublishRequest(b.apiPrefix+"DIRECT.GET."+b.cfg.Stream, inbox, req); err != nil {
			return nil, err
		}
		var n int
		var lastSeq uint64
		if pubs, n, lastSeq, err = b.readBatch(ctx, sub, topic, at.pos.Epoch, pubs); err != nil {
			return nil, err
		}
		switch {
		case lastSeq == at.seq:
			return pubs, nil
		case n == batch && lastSeq < at.seq:
			from = lastSeq + 1
		default:
			return nil, errStale
		}
	}
}

// readBatch reads one direct get batch from sub, appending the publications of
// epoch to pubs. It returns how many messages came and the last one's sequence.
func (b *Broker) readBatch(ctx context.Context, sub *natsgo.Subscription, topic, epoch string, pubs []broker.Publication) ([]broker.Publication, int, uint64, error) {
	var n int
	var lastSeq uint64
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, 0, err
		}
		switch status := m.Header.Get(statusHdr); status {
		case "":
		case "204": // end of batch
			return pubs, n, lastSeq, nil
		case "404": // nothing (more) stored
			return pubs, n, lastSeq, nil
		default:
			return nil, 0, 0, fmt.Errorf("nats: direct get: status %s %s", status, m.Header.Get(descrHdr))
		}
		n++
		lastSeq, _ = strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		pos, ok := position(m.Header)
		if !ok || pos.Epoch != epoch || pos.Offset == 0 {
			continue
		}
		pubs = append(pubs, broker.Publication{Topic: topic, Offset: pos.Offset, Epoch: pos.Epoch,
			Data: m.Data, User: m.Header.Get(hdrUser)})
	}
}
