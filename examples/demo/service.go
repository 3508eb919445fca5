package demo

import (
	"context"
	"encoding/json"
	"errors"
	"math"

	"github.com/heraldgg/herald/protocol"
	"github.com/heraldgg/herald/service"
)

// ServiceName is the demo service's name: Herald routes "demo.*" to it.
const ServiceName = "demo"

// Demo errors, in the 1000–1999 range left to game services.
const (
	codeBadRoom = 1001 // room name missing characters or too long
	codeBadText = 1002 // chat text empty or too long
	codeBadMove = 1003 // position not a finite number
)

// NewService returns the demo game service, built only on the service SDK as a
// game team would build theirs. cfg.Name defaults to "demo". Its methods:
//
//	demo.echo  any data             → the same data
//	demo.join  {"room":"lobby"}     → subscribes the session to "room.<room>" through
//	                                  Herald's server API, tells the room, and answers
//	                                  {"room":"lobby","topic":"room.lobby","chat":"chat.lobby"}
//	demo.chat  {"room":"lobby","text":"hi"}
//	                                → publishes {"user":…,"text":"hi"} to "chat.<room>"
//	                                  as the player, answers {"offset":n}
//	demo.move  {"map":"demo","x":1,"y":2}
//	                                → sets the session's position for region messages
//	                                  and answers the position; on a Herald without
//	                                  maps it only echoes the position ("region": false)
func NewService(cfg service.Config) (*service.Service, error) {
	if cfg.Name == "" {
		cfg.Name = ServiceName
	}
	svc, err := service.New(cfg)
	if err != nil {
		return nil, err
	}
	d := &demoService{herald: svc.Herald()}
	svc.Handle("echo", d.echo)
	svc.Handle("join", d.join)
	svc.Handle("chat", d.chat)
	svc.Handle("move", d.move)
	return svc, nil
}

type demoService struct {
	herald *service.Herald
}

func (d *demoService) echo(_ context.Context, req *service.Request) ([]byte, error) {
	return req.Data, nil
}

type joinRequest struct {
	Room string `json:"room"`
}

type joinReply struct {
	Room  string `json:"room"`
	Topic string `json:"topic"`
	Chat  string `json:"chat"`
}

func (d *demoService) join(ctx context.Context, req *service.Request) ([]byte, error) {
	var in joinRequest
	if len(req.Data) > 0 {
		if err := json.Unmarshal(req.Data, &in); err != nil {
			return nil, protocol.Errorf(protocol.CodeBadRequest, "join takes {\"room\": name}")
		}
	}
	if in.Room == "" {
		in.Room = "lobby"
	}
	if !validRoom(in.Room) {
		return nil, protocol.Errorf(codeBadRoom, "a room name is 1 to 32 letters, digits, - or _")
	}
	topic := "room." + in.Room
	if err := d.herald.Subscribe(ctx, req.Session, topic); err != nil {
		return nil, err
	}
	// Tell the room; a player who misses this still joined.
	hello, _ := json.Marshal(map[string]string{"event": "joined", "user": req.User})
	_, _ = d.herald.PublishAs(ctx, topic, req.User, hello)
	return json.Marshal(joinReply{Room: in.Room, Topic: topic, Chat: "chat." + in.Room})
}

type chatRequest struct {
	Room string `json:"room"`
	Text string `json:"text"`
}

func (d *demoService) chat(ctx context.Context, req *service.Request) ([]byte, error) {
	var in chatRequest
	if err := json.Unmarshal(req.Data, &in); err != nil {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "chat takes {\"room\": name, \"text\": message}")
	}
	if in.Room == "" {
		in.Room = "lobby"
	}
	if !validRoom(in.Room) {
		return nil, protocol.Errorf(codeBadRoom, "a room name is 1 to 32 letters, digits, - or _")
	}
	if in.Text == "" || len(in.Text) > 500 {
		return nil, protocol.Errorf(codeBadText, "chat text must be 1 to 500 bytes")
	}
	msg, _ := json.Marshal(map[string]string{"user": req.User, "text": in.Text})
	pos, err := d.herald.PublishAs(ctx, "chat."+in.Room, req.User, msg)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]uint64{"offset": pos.Offset})
}

type moveRequest struct {
	Map string  `json:"map"`
	X   float64 `json:"x"`
	Y   float64 `json:"y"`
}

type moveReply struct {
	moveRequest
	// Region says whether Herald placed the session on the map (false on a
	// Herald without maps, where the position is only echoed).
	Region bool `json:"region"`
}

func (d *demoService) move(ctx context.Context, req *service.Request) ([]byte, error) {
	var in moveRequest
	if err := json.Unmarshal(req.Data, &in); err != nil {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "move takes {\"map\": name, \"x\": number, \"y\": number}")
	}
	if in.Map == "" {
		in.Map = "demo" // the map of the default config
	}
	if math.IsNaN(in.X) || math.IsInf(in.X, 0) || math.IsNaN(in.Y) || math.IsInf(in.Y, 0) {
		return nil, protocol.Errorf(codeBadMove, "x and y must be finite numbers")
	}
	out := moveReply{moveRequest: in, Region: true}
	if err := d.herald.SetPosition(ctx, req.Session, in.Map, in.X, in.Y); err != nil {
		if !errors.Is(err, service.ErrUnsupported) {
			return nil, err
		}
		out.Region = false
	}
	return json.Marshal(out)
}

func validRoom(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
