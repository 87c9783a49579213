package main

import (
	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/builtins/clock"
	"github.com/basalt-lab/basalt/builtins/test"
	"github.com/basalt-lab/basalt/runtime/interp"
	"go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// tables are the documented builtin modules, in `basalt doc` order.
func tables() []*builtins.Table {
	return append([]*builtins.Table{interp.Declarations}, moduleTables()...)
}

// moduleTables are the Starlark modules predeclared in job files.
func moduleTables() []*builtins.Table {
	return append(deviceTables(), test.Table, clock.Table, jsonTable, structTable)
}

var jsonTable = &builtins.Table{
	Name: "json",
	Doc:  "JSON encoding and decoding (go.starlark.net/lib/json).",
	Members: []builtins.Builtin{
		{Name: "encode", Params: "x", Doc: "Returns the JSON encoding of x.", Value: json.Module.Members["encode"]},
		{Name: "decode", Params: "x, default=unbound", Doc: "Returns the Starlark value of the JSON text x.", Value: json.Module.Members["decode"]},
		{Name: "indent", Params: `str, prefix="", indent="\t"`, Doc: "Returns str, valid JSON, indented.", Value: json.Module.Members["indent"]},
	},
}

// structTable documents the struct builtin; it is predeclared as a
// function, not a module.
var structTable = &builtins.Table{
	Name: "struct",
	Doc:  "struct(**kwargs) returns an immutable record with the given fields (go.starlark.net/starlarkstruct).",
}

// predeclared returns the names job files see besides job, stage, cleanup.
func predeclared() starlark.StringDict {
	d := starlark.StringDict{"struct": starlark.NewBuiltin("struct", starlarkstruct.Make)}
	for _, t := range moduleTables() {
		if t == structTable {
			continue
		}
		d[t.Name] = t.Module()
	}
	return d
}
