package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/heraldgg/herald/internal/bench"
	"github.com/heraldgg/herald/protocol"
)

const benchUsage = `Usage: herald bench --mode idle|fanout|request [flags]

Load-tests a running node over its client port and reads the node's own figures
(memory, CPU, goroutines) from its admin API. It stops by itself after
--warmup plus --duration.

  idle     open --conns connections, each subscribed to a topic, hold them, and
           report the node's memory and CPU per idle connection
  fanout   subscribe --conns connections to --topics topics and publish through
           the admin API at --rate (0: as fast as deliveries complete); report
           deliveries/s, latency percentiles, lost and duplicated messages
  request  --conns clients calling --route; report answers/s, latency and the
           error codes received

Flags:
`

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var cfg bench.Config
	mode := fs.String("mode", "", "`mode`: idle, fanout or request (required)")
	fs.StringVar(&cfg.URL, "url", "", "client port `URL`: ws://host:port/ws or tcp://host:port (default "+bench.DefaultURL+", or "+bench.DefaultTCPURL+" with --transport tcp)")
	fs.StringVar(&cfg.Transport, "transport", "", "`transport`: ws or tcp (default: the URL's)")
	codec := fs.String("codec", "json", "`codec`: json or protobuf")
	fs.StringVar(&cfg.Admin, "admin", bench.DefaultAdmin, "the node's admin API base `URL`")
	fs.StringVar(&cfg.APIKey, "api-key", "", "admin API `key`, when the node requires one")
	fs.IntVar(&cfg.Conns, "conns", bench.DefaultConns, "`number` of client connections (subscribers, or requesters)")
	fs.IntVar(&cfg.Topics, "topics", 1, "`number` of topics the connections subscribe to, round robin")
	fs.Float64Var(&cfg.Rate, "rate", 0, "messages (fanout) or requests (request) per `second` in all; 0: as fast as the node takes")
	fs.IntVar(&cfg.Size, "size", bench.DefaultSize, "payload size in `bytes` (at least 26)")
	fs.DurationVar(&cfg.Duration, "duration", bench.DefaultDuration, "how long to measure")
	fs.DurationVar(&cfg.Warmup, "warmup", bench.DefaultWarmup, "how long to run the load before measuring (0s: none)")
	fs.StringVar(&cfg.Route, "route", bench.DefaultRoute, "request mode's `route` (service.method)")
	fs.IntVar(&cfg.InFlight, "inflight", bench.DefaultInFlight, "fanout at full speed: messages per topic published but not yet delivered to all")
	fs.IntVar(&cfg.PerSource, "per-source", bench.DefaultPerSource, "connections per source address before spreading over 127.0.0.2… (loopback targets)")
	fs.StringVar(&cfg.ProfileDir, "pprof-dir", "", "save the node's CPU profile of the measured part and its heap and goroutine profiles in `dir`")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	verbose := fs.Bool("v", false, "log progress at debug level")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg.Mode = bench.Mode(*mode)
	c, err := protocol.ParseCodec(*codec)
	if err != nil {
		fmt.Fprintln(stderr, "herald bench:", err)
		return 2
	}
	cfg.Codec = c
	// The flag's 0 means none, while the Config's zero value means the default.
	if cfg.Warmup == 0 {
		cfg.Warmup = -1
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg, log)
	if rep == nil {
		fmt.Fprintln(stderr, "herald bench:", err)
		return 2
	}
	if *asJSON {
		err2 := rep.WriteJSON(stdout)
		err = errors.Join(err, err2)
	} else if err2 := rep.Print(stdout); err2 != nil {
		err = errors.Join(err, err2)
	}
	if err != nil {
		fmt.Fprintln(stderr, "herald bench:", err)
		return 1
	}
	return 0
}
