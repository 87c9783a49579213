// Package lint checks a job's calls of builtin modules without running
// them, for `basalt check`: a misspelled member (sol.expct) or keyword
// (timeot=) is an error naming file:line with a did-you-mean, where at run
// time it would fail only when the stage reaches it. It also reports which
// builtins a job can reach (through loaded libraries too), so that check
// can refuse ipmi.* on a device without a BMC.
//
// The source of truth for members and keywords is the builtins.Table of
// each module: a member's Params string ("action, timeout=None") lists its
// parameters. Functions of loaded .star files are checked against their
// def's parameters.
package lint

import (
	"fmt"
	"sort"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/spell"
	"go.starlark.net/resolve"
	"go.starlark.net/syntax"
)

// Problem is an error at a position in a job or library file.
type Problem struct {
	Pos syntax.Position
	Msg string
}

func (p *Problem) Error() string { return p.Pos.String() + ": " + p.Msg }

// Use is a builtin that the job can reach: called at Pos, and reached from
// the job file at From (the same as Pos for a call in the job file).
type Use struct {
	Builtin  string // "ipmi.power"
	Pos      syntax.Position
	From     syntax.Position
	Keywords []string
}

// Source reads a file the job loaded: name as load() wrote it (a path
// relative to the job's directory, or @stdlib//x.star).
type Source func(name string) ([]byte, error)

// Result is what Check found.
type Result struct {
	Problems []error
	// Uses are the builtin calls the job file can reach, sorted by From.
	Uses []Use
}

// Check parses the job file (src) and the files it loads (read through
// source), resolves every call of a module in tables and of a loaded
// function, and checks member names and keywords. A table with Name ""
// holds predeclared functions (job, stage, cleanup).
func Check(file string, src []byte, source Source, tables []*builtins.Table, opts *syntax.FileOptions) (*Result, error) {
	c := &checker{tables: map[string]*builtins.Table{}, globals: map[string]*builtins.Table{}, files: map[string]*fileInfo{}, source: source, opts: opts}
	for _, t := range tables {
		if t.Name == "" {
			for _, b := range t.Members {
				c.globals[b.Name] = t
			}
			continue
		}
		c.tables[t.Name] = t
	}
	job, err := c.parse(file, src)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	seenMsg := map[string]bool{}
	for _, p := range c.problems {
		if !seenMsg[p.Error()] {
			seenMsg[p.Error()] = true
			res.Problems = append(res.Problems, p)
		}
	}
	// Everything the job file refers to is reachable (stages are
	// functions; cleanup(master.power_off) passes one).
	res.Uses = append(res.Uses, job.direct...)
	for _, r := range job.refs {
		res.Uses = append(res.Uses, c.reach(r.def, r.pos, file, map[*syntax.DefStmt]bool{})...)
	}
	sort.SliceStable(res.Uses, func(i, j int) bool { return res.Uses[i].From.Line < res.Uses[j].From.Line })
	return res, nil
}

type checker struct {
	tables   map[string]*builtins.Table
	globals  map[string]*builtins.Table
	files    map[string]*fileInfo
	source   Source
	opts     *syntax.FileOptions
	problems []error
}

// fileInfo is one parsed file: its top-level defs, the module-like
// structs it builds (master = struct(boot = boot, ...)), and what each def
// uses.
type fileInfo struct {
	defs    map[string]*syntax.DefStmt
	structs map[string]map[string]*syntax.DefStmt
	// direct are builtin calls at top level or in any def, refs the defs
	// referred to; per def in uses and calls.
	direct []Use
	refs   []ref
	uses   map[*syntax.DefStmt][]Use
	calls  map[*syntax.DefStmt][]ref
}

type ref struct {
	def *syntax.DefStmt
	pos syntax.Position
}

// reach returns the builtin uses of d and of every def it refers to. From
// is the last position on the way that is in the job file: the line of the
// job that leads to the builtin.
func (c *checker) reach(d *syntax.DefStmt, from syntax.Position, job string, seen map[*syntax.DefStmt]bool) []Use {
	if d == nil || seen[d] {
		return nil
	}
	seen[d] = true
	var out []Use
	for _, f := range c.files {
		for _, u := range f.uses[d] {
			u.From = from
			if u.Pos.Filename() == job {
				u.From = u.Pos
			}
			out = append(out, u)
		}
		for _, r := range f.calls[d] {
			next := from
			if r.pos.Filename() == job {
				next = r.pos
			}
			out = append(out, c.reach(r.def, next, job, seen)...)
		}
	}
	return out
}

func (c *checker) parse(name string, src []byte) (*fileInfo, error) {
	if f, ok := c.files[name]; ok {
		return f, nil
	}
	f, err := c.opts.Parse(name, src, 0)
	if err != nil {
		return nil, err
	}
	// Every free name counts as predeclared: Declare has already reported
	// undefined ones; here only module names matter.
	anyName := func(string) bool { return true }
	if err := resolve.File(f, anyName, anyName); err != nil {
		return nil, err
	}
	info := &fileInfo{defs: map[string]*syntax.DefStmt{}, structs: map[string]map[string]*syntax.DefStmt{},
		uses: map[*syntax.DefStmt][]Use{}, calls: map[*syntax.DefStmt][]ref{}}
	c.files[name] = info

	// Loaded names: the binding of each local name, and the def it stands
	// for (a function) or the struct of defs (a library module).
	// Keyed by the binding's first Ident: a use inside a def has a Binding
	// of its own (Scope free) with the same First.
	loadedDef := map[*syntax.Ident]*syntax.DefStmt{}
	loadedStruct := map[*syntax.Ident]map[string]*syntax.DefStmt{}
	for _, st := range f.Stmts {
		switch st := st.(type) {
		case *syntax.DefStmt:
			info.defs[st.Name.Name] = st
		case *syntax.LoadStmt:
			module := st.ModuleName()
			lsrc, err := c.source(module)
			if err != nil {
				continue // Declare reports unloadable modules
			}
			lib, err := c.parse(module, lsrc)
			if err != nil {
				c.problems = append(c.problems, err)
				continue
			}
			for i, from := range st.From {
				b := origin(st.To[i])
				if b == nil {
					continue
				}
				if d := lib.defs[from.Name]; d != nil {
					loadedDef[b] = d
				} else if s := lib.structs[from.Name]; s != nil {
					loadedStruct[b] = s
				}
			}
		}
	}
	// name = struct(k = def, ...) at top level: a library's module value.
	for _, st := range f.Stmts {
		as, ok := st.(*syntax.AssignStmt)
		if !ok || as.Op != syntax.EQ {
			continue
		}
		lhs, ok1 := as.LHS.(*syntax.Ident)
		call, ok2 := as.RHS.(*syntax.CallExpr)
		if !ok1 || !ok2 {
			continue
		}
		if fn, ok := call.Fn.(*syntax.Ident); !ok || fn.Name != "struct" {
			continue
		}
		m := map[string]*syntax.DefStmt{}
		for _, a := range call.Args {
			if bin, ok := a.(*syntax.BinaryExpr); ok && bin.Op == syntax.EQ {
				k, _ := bin.X.(*syntax.Ident)
				v, _ := bin.Y.(*syntax.Ident)
				if k != nil && v != nil && info.defs[v.Name] != nil {
					m[k.Name] = info.defs[v.Name]
				}
			}
		}
		info.structs[lhs.Name] = m
	}

	// defOf returns the def an expression names: a top-level def of this
	// file, a loaded function, or a member of a loaded library struct.
	defOf := func(e syntax.Expr) (*syntax.DefStmt, string) {
		switch e := e.(type) {
		case *syntax.Ident:
			b, _ := e.Binding.(*resolve.Binding)
			if b == nil {
				return nil, ""
			}
			if d := loadedDef[b.First]; d != nil {
				return d, e.Name
			}
			if b.Scope == resolve.Global {
				return info.defs[e.Name], e.Name
			}
		case *syntax.DotExpr:
			x, ok := e.X.(*syntax.Ident)
			if !ok {
				return nil, ""
			}
			if s := loadedStruct[origin(x)]; x != nil && s != nil {
				d := s[e.Name.Name]
				if d == nil {
					c.problem(e.Name.NamePos, "%s has no member %s%s", x.Name, e.Name.Name, didYouMean(e.Name.Name, keys(s)))
				}
				return d, x.Name + "." + e.Name.Name
			}
		}
		return nil, ""
	}

	var cur *syntax.DefStmt // the def being walked; nil at top level
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.DefStmt:
			// Walk the body with cur set, then stop the outer walk.
			saved := cur
			cur = n
			for _, p := range n.Params {
				syntax.Walk(p, c.walker(info, &cur, defOf))
			}
			for _, st := range n.Body {
				syntax.Walk(st, c.walker(info, &cur, defOf))
			}
			cur = saved
			return false
		}
		return c.walker(info, &cur, defOf)(n)
	})
	return info, nil
}

// walker visits one node: a call of a module member or a loaded def is
// checked; a reference to a def is recorded for reachability.
func (c *checker) walker(info *fileInfo, cur **syntax.DefStmt, defOf func(syntax.Expr) (*syntax.DefStmt, string)) func(syntax.Node) bool {
	var visit func(n syntax.Node) bool
	visit = func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.DefStmt:
			// A nested def: its uses count for the enclosing one.
			for _, st := range n.Body {
				syntax.Walk(st, visit)
			}
			return false
		case *syntax.CallExpr:
			if dot, ok := n.Fn.(*syntax.DotExpr); ok {
				if x, ok := dot.X.(*syntax.Ident); ok && c.isModule(x) {
					c.moduleCall(info, *cur, x.Name, dot, n)
					for _, a := range n.Args {
						syntax.Walk(a, visit)
					}
					return false
				}
			}
			if id, ok := n.Fn.(*syntax.Ident); ok && c.globals[id.Name] != nil {
				if b, _ := id.Binding.(*resolve.Binding); b != nil && b.Scope == resolve.Predeclared {
					t := c.globals[id.Name]
					m, _ := t.Lookup(id.Name)
					c.keywords(id.Name, m.Params, n)
				}
			}
			if d, name := defOf(n.Fn); d != nil {
				c.defKeywords(name, d, n)
			}
		case *syntax.DotExpr:
			if x, ok := n.X.(*syntax.Ident); ok && c.isModule(x) {
				// A member referred to without a call (fn = sol.expect).
				if _, ok := c.tables[x.Name].Lookup(n.Name.Name); !ok {
					c.unknownMember(x.Name, n)
				}
				return false
			}
			if d, _ := defOf(n); d != nil {
				c.addRef(info, *cur, d, n)
				return false
			}
		case *syntax.Ident:
			if d, _ := defOf(n); d != nil && d != *cur {
				c.addRef(info, *cur, d, n)
			}
		}
		return true
	}
	return visit
}

func (c *checker) addRef(info *fileInfo, cur, d *syntax.DefStmt, n syntax.Expr) {
	start, _ := n.Span()
	if cur == nil {
		info.refs = append(info.refs, ref{def: d, pos: start})
		return
	}
	info.calls[cur] = append(info.calls[cur], ref{def: d, pos: start})
}

// origin returns the Ident that first binds the name id refers to, nil
// for a predeclared or unresolved name.
func origin(id *syntax.Ident) *syntax.Ident {
	b, _ := id.Binding.(*resolve.Binding)
	if b == nil {
		return nil
	}
	return b.First
}

// isModule reports whether x names a predeclared module (not a local or
// global of the same name).
func (c *checker) isModule(x *syntax.Ident) bool {
	b, _ := x.Binding.(*resolve.Binding)
	return c.tables[x.Name] != nil && b != nil && b.Scope == resolve.Predeclared
}

func (c *checker) moduleCall(info *fileInfo, cur *syntax.DefStmt, module string, dot *syntax.DotExpr, call *syntax.CallExpr) {
	t := c.tables[module]
	m, ok := t.Lookup(dot.Name.Name)
	if !ok {
		c.unknownMember(module, dot)
		return
	}
	kws := c.keywords(module+"."+m.Name, m.Params, call)
	start, _ := call.Span()
	u := Use{Builtin: module + "." + m.Name, Pos: start, From: start, Keywords: kws}
	if cur == nil {
		info.direct = append(info.direct, u)
	} else {
		info.uses[cur] = append(info.uses[cur], u)
	}
}

func (c *checker) unknownMember(module string, dot *syntax.DotExpr) {
	var names []string
	for _, b := range c.tables[module].Members {
		names = append(names, b.Name)
	}
	c.problem(dot.Name.NamePos, "%s has no member %s%s", module, dot.Name.Name, didYouMean(dot.Name.Name, names))
}

// keywords checks the keyword arguments of call against params, a Params
// string; it returns the keywords given. A signature with *args or
// **kwargs accepts anything.
func (c *checker) keywords(fn, params string, call *syntax.CallExpr) []string {
	names, open := ParseParams(params)
	var given []string
	for _, a := range call.Args {
		bin, ok := a.(*syntax.BinaryExpr)
		if !ok || bin.Op != syntax.EQ {
			continue
		}
		k, ok := bin.X.(*syntax.Ident)
		if !ok {
			continue
		}
		given = append(given, k.Name)
		if !open && !contains(names, k.Name) {
			c.problem(k.NamePos, "%s: unexpected keyword argument %s%s", fn, k.Name, didYouMean(k.Name, names))
		}
	}
	return given
}

func (c *checker) defKeywords(fn string, d *syntax.DefStmt, call *syntax.CallExpr) {
	var names []string
	for _, p := range d.Params {
		switch p := p.(type) {
		case *syntax.Ident:
			names = append(names, p.Name)
		case *syntax.BinaryExpr:
			if id, ok := p.X.(*syntax.Ident); ok {
				names = append(names, id.Name)
			}
		case *syntax.UnaryExpr: // *args, **kwargs
			if p.Op == syntax.STARSTAR {
				return
			}
		}
	}
	c.keywords(fn, strings.Join(names, ", "), call)
}

func (c *checker) problem(pos syntax.Position, format string, v ...any) {
	c.problems = append(c.problems, &Problem{Pos: pos, Msg: fmt.Sprintf(format, v...)})
}

// ParseParams returns the parameter names of a Params string; it is
// builtins.ParseParams, the parser the builtin envelope uses too.
func ParseParams(params string) (names []string, open bool) {
	return builtins.ParseParams(params)
}

func didYouMean(s string, known []string) string {
	if m := spell.Suggest(s, known); m != "" {
		return fmt.Sprintf(" (did you mean %s?)", m)
	}
	return ""
}

func keys(m map[string]*syntax.DefStmt) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
