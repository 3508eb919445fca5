package config

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"time"
)

const modulePath = "github.com/heraldgg/herald"

// Key is one documented setting.
type Key struct {
	// Path is the dotted key, e.g. "gateway.heartbeat_interval".
	Path string
	// Env is the environment variable that sets it, empty for keys inside lists.
	Env string
	// Type is a readable type name.
	Type string
	// Doc is the field's doc comment.
	Doc string
	// Section is true for a group of keys rather than a value.
	Section bool
}

// Keys lists every key of the tree with its doc comment, read from the Go source
// under root (the module's directory).
func Keys(root string) ([]Key, error) {
	c := &commentIndex{root: root, types: map[string]map[string]string{}}
	var out []Key
	err := walk(reflect.TypeFor[Config](), "", true, c, &out)
	return out, err
}

func walk(t reflect.Type, prefix string, envOK bool, c *commentIndex, out *[]Key) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" {
			// Types shared with the wire (discovery.Instance) carry only JSON tags;
			// the loader matches those fields by name.
			tag, _, _ = strings.Cut(f.Tag.Get("json"), ",")
		}
		if tag == "" || tag == "-" {
			continue
		}
		docText, err := c.field(t, f.Name)
		if err != nil {
			return err
		}
		path := tag
		if prefix != "" {
			path = prefix + "." + tag
		}
		k := Key{Path: path, Doc: docText, Type: typeName(f.Type)}
		if envOK {
			k.Env = EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "__"))
		}
		ft := f.Type
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]() {
			k.Section = true
			k.Env = ""
			*out = append(*out, k)
			if err := walk(ft, path, envOK, c, out); err != nil {
				return err
			}
			continue
		}
		*out = append(*out, k)
		if elem := elemStruct(ft); elem != nil {
			if err := walk(elem, path+"."+elemPlaceholder(ft), false, c, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// elemStruct returns the struct inside a map of lists, a list or a map, if any.
func elemStruct(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Map || t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct {
		return t
	}
	return nil
}

func elemPlaceholder(t reflect.Type) string {
	var b strings.Builder
	for t.Kind() == reflect.Map || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Map {
			b.WriteString("<name>")
		} else {
			b.WriteString("[]")
		}
		t = t.Elem()
	}
	return b.String()
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration"
	case t.Kind() == reflect.Pointer:
		return typeName(t.Elem())
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	case t.Kind() == reflect.Map:
		return "map of " + typeName(t.Key()) + " to " + typeName(t.Elem())
	case t.Kind() == reflect.Struct:
		return "object"
	case t.Kind() == reflect.Float32, t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	}
	return t.Kind().String()
}

// commentIndex reads field doc comments from source, one package at a time.
type commentIndex struct {
	root  string
	types map[string]map[string]string // "pkg.Type" → field → doc
}

func (c *commentIndex) field(t reflect.Type, name string) (string, error) {
	key := t.PkgPath() + "." + t.Name()
	fields, ok := c.types[key]
	if !ok {
		if err := c.load(t.PkgPath()); err != nil {
			return "", err
		}
		fields = c.types[key]
	}
	d, ok := fields[name]
	if !ok {
		return "", fmt.Errorf("config: no doc comment for %s.%s", key, name)
	}
	return d, nil
}

func (c *commentIndex) load(pkgPath string) error {
	rel, ok := strings.CutPrefix(pkgPath, modulePath)
	if !ok {
		return fmt.Errorf("config: %s is outside the module", pkgPath)
	}
	dir := filepath.Join(c.root, filepath.FromSlash(strings.TrimPrefix(rel, "/")))
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return err
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			return fmt.Errorf("config: parse %s: %w", name, err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				m := map[string]string{}
				for _, fld := range st.Fields.List {
					text := strings.TrimSpace(fld.Doc.Text())
					for _, n := range fld.Names {
						m[n.Name] = text
					}
				}
				c.types[pkgPath+"."+ts.Name.Name] = m
			}
		}
	}
	return nil
}

// Render returns docs/configuration.md.
func Render(root string) ([]byte, error) {
	keys, err := Keys(root)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`# Configuration

<!-- Rendered from the Go source by "make docs"; edit the doc comments, not this file. -->

A Herald node reads its settings from, in order of precedence (later wins):

1. the built-in defaults listed here,
2. a YAML file given with ` + "`herald serve --config FILE`" + `,
3. environment variables: the key path in upper case, levels joined by a double
   underscore, prefixed with ` + "`HERALD_`" + ` — ` + "`gateway.heartbeat_interval`" + ` is
   ` + "`HERALD_GATEWAY__HEARTBEAT_INTERVAL`" + `; lists are comma-separated,
4. command-line flags: ` + "`--client-addr`" + ` (listen.client), ` + "`--tcp-addr`" + ` (listen.tcp),
   ` + "`--admin-addr`" + ` (listen.admin), ` + "`--broker`" + ` (broker.url), ` + "`--node`" + ` (node).

An unknown key is an error, so a misspelt setting never goes unnoticed. A zero or
empty value means the default. Durations are written like ` + "`30s`, `1m30s`, `250ms`" + `.

Example file:

` + "```yaml" + `
node: eu-1
listen:
  client: ":7000"
  admin: "127.0.0.1:7070"
gateway:
  heartbeat_interval: 20s
  client_publish: ["chat.*", "lobby.*"]
session:
  max_queue_bytes: 524288
hub:
  lossy_topics: ["positions.*"]
broker:
  url: redis://10.0.0.5:6379/0
admin:
  api_key: change-me
` + "```" + `

`)
	inList := false
	for _, k := range keys {
		depth := strings.Count(k.Path, ".")
		if k.Section {
			if inList {
				b.WriteString("\n")
				inList = false
			}
			if depth == 0 {
				fmt.Fprintf(&b, "## `%s`\n\n%s\n\n", k.Path, paragraph(k.Doc))
			} else {
				fmt.Fprintf(&b, "### `%s`\n\n%s\n\n", k.Path, paragraph(k.Doc))
			}
			continue
		}
		fmt.Fprintf(&b, "- **`%s`** (%s", k.Path, k.Type)
		if k.Env != "" {
			fmt.Fprintf(&b, ", `%s`", k.Env)
		}
		fmt.Fprintf(&b, "): %s\n", paragraph(k.Doc))
		inList = true
		if depth == 0 {
			b.WriteString("\n")
			inList = false
		}
	}
	return b.Bytes(), nil
}

// paragraph joins a doc comment's lines into one paragraph of Markdown.
func paragraph(text string) string {
	return strings.Join(strings.Fields(text), " ")
}
