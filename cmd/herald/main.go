// Command herald is the Herald gateway: "herald serve" runs a node, "herald bench"
// load-tests one, "herald version" prints the build.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server"
)

const usage = `Herald — a gateway and message-broadcast server for online games.

Usage:
  herald serve [flags]     run a node (with no flags: the demo on the defaults)
  herald bench [flags]     load-test a running node (idle, fanout or request)
  herald version           print the version
  herald help              show this text

Run "herald serve -h" or "herald bench -h" for their flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "bench":
		return runBench(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "herald", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "herald: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "YAML configuration `file`")
	overrides := map[string]*string{
		"listen.client": fs.String("client-addr", "", "client port `address` (WebSocket and demo page), default :7000"),
		"listen.tcp":    fs.String("tcp-addr", "", "raw TCP client port `address`, default :7001; \"off\" disables it"),
		"listen.admin":  fs.String("admin-addr", "", "admin API `address`, default 127.0.0.1:7070"),
		"broker.url":    fs.String("broker", "", "broker `url`: memory (default), redis://host:port/db or nats://host:port"),
		"node":          fs.String("node", "", "node `name`, unique in the cluster"),
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	src := config.Sources{File: *file, Overrides: map[string]any{}}
	for key, v := range overrides {
		if *v != "" {
			src.Overrides[key] = *v
		}
	}
	cfg, err := config.Load(src)
	if err != nil {
		fmt.Fprintln(stderr, "herald:", err)
		return 2
	}
	log := server.NewLogger(cfg.Log, stderr)
	tuneRuntime(cfg.Runtime, log)
	srv, err := server.New(cfg, log)
	if err != nil {
		log.Error("cannot build node", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx); err != nil {
		log.Error("node stopped with an error", "err", err)
		return 1
	}
	return 0
}

func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v + " " + info.GoVersion
}

// tuneRuntime applies runtime.gc_percent and runtime.memory_limit, unless the
// operator set GOGC or GOMEMLIMIT, which the Go runtime has applied already.
func tuneRuntime(rt config.Runtime, log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(rt.GCPercent)
	} else {
		log.Info("GOGC is set; runtime.gc_percent ignored", "GOGC", os.Getenv("GOGC"))
	}
	if rt.MemoryLimit > 0 {
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(rt.MemoryLimit)
		} else {
			log.Info("GOMEMLIMIT is set; runtime.memory_limit ignored", "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"))
		}
	}
}
