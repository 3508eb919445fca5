// Package demo holds Herald's built-in demo: a browser page served on the client
// port of a node started with the defaults, and a game service (NewService) that
// the node runs in-process and routes "demo.*" to. The service is written with
// the public service SDK only, as an example of what a game team writes.
package demo

import (
	"bytes"
	"embed"
	"net/http"
)

//go:embed web/index.html
var files embed.FS

// Page serves the demo page at "/"; the page connects to wsPath on the same host.
func Page(wsPath string) http.Handler {
	raw, err := files.ReadFile("web/index.html")
	if err != nil {
		// The file is embedded at build time; failing here means a broken build.
		panic(err)
	}
	body := bytes.ReplaceAll(raw, []byte("{{WS_PATH}}"), []byte(wsPath))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && r.URL.Path != "/index.html" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	})
}
