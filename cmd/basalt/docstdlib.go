package main

import (
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/basalt-lab/basalt/stdlib"
	"go.starlark.net/syntax"
)

// writeStdlibDoc prints the docstrings of the embedded Starlark libraries:
// each file's, then each public function's with its signature.
func writeStdlibDoc(w io.Writer) error {
	fmt.Fprintf(w, "# stdlib\n\nStarlark libraries embedded in basalt, loaded as load(\"@stdlib//NAME.star\", ...).\n\n")
	names, err := fs.Glob(stdlib.FS, "*.star")
	if err != nil {
		return err
	}
	for _, name := range names {
		data, err := fs.ReadFile(stdlib.FS, name)
		if err != nil {
			return err
		}
		f, err := (&syntax.FileOptions{Set: true, While: true, TopLevelControl: true}).Parse(name, data, 0)
		if err != nil {
			return fmt.Errorf("stdlib %s: %w", name, err)
		}
		fmt.Fprintf(w, "## @stdlib//%s\n\n", name)
		if doc := docstring(f.Stmts); doc != "" {
			fmt.Fprintf(w, "%s\n\n", doc)
		}
		for _, st := range f.Stmts {
			def, ok := st.(*syntax.DefStmt)
			if !ok || strings.HasPrefix(def.Name.Name, "_") {
				continue
			}
			var params []string
			for _, p := range def.Params {
				start, end := p.Span()
				params = append(params, string(data[int(start.Col)-1+lineOffset(data, start.Line):int(end.Col)-1+lineOffset(data, end.Line)]))
			}
			fmt.Fprintf(w, "%s(%s)\n", def.Name.Name, strings.Join(params, ", "))
			for _, line := range strings.Split(docstring(def.Body), "\n") {
				fmt.Fprintf(w, "    %s\n", strings.TrimSpace(line))
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}

func docstring(stmts []syntax.Stmt) string {
	if len(stmts) == 0 {
		return ""
	}
	e, ok := stmts[0].(*syntax.ExprStmt)
	if !ok {
		return ""
	}
	lit, ok := e.X.(*syntax.Literal)
	if !ok || lit.Token != syntax.STRING {
		return ""
	}
	return strings.TrimSpace(lit.Value.(string))
}

// lineOffset returns the byte offset of the start of 1-based line n.
func lineOffset(data []byte, n int32) int {
	off := 0
	for i := int32(1); i < n; i++ {
		j := strings.IndexByte(string(data[off:]), '\n')
		if j < 0 {
			return len(data)
		}
		off += j + 1
	}
	return off
}
