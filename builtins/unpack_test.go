package builtins_test

import (
	"fmt"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"go.starlark.net/starlark"
)

// The Opt unpackers: None leaves the default and Set false; a value of the
// wrong type is refused in words UnpackArgs's "for parameter NAME: " reads
// on from, without the value.
func TestOptUnpackers(t *testing.T) {
	list := starlark.NewList([]starlark.Value{starlark.String("a"), starlark.MakeInt(1)})
	for _, tc := range []struct {
		name string
		u    interface {
			starlark.Unpacker
		}
		v    starlark.Value
		want string // value after Unpack, or the error
	}{
		{"str", &builtins.OptStr{V: "def"}, starlark.None, "{def false}"},
		{"str", &builtins.OptStr{V: "def"}, starlark.String(""), "{ true}"},
		{"str", &builtins.OptStr{}, starlark.MakeInt(3), "must be a string, not int"},
		{"int", &builtins.OptInt{V: 7}, starlark.None, "{7 false}"},
		{"int", &builtins.OptInt{}, starlark.MakeInt(-2), "{-2 true}"},
		{"int", &builtins.OptInt{}, starlark.String("secret-ish"), "must be an integer, not string"},
		{"bool", &builtins.OptBool{V: true}, starlark.None, "{true false}"},
		{"bool", &builtins.OptBool{}, starlark.MakeInt(1), "must be True or False, not int"},
		{"list", &builtins.OptList{}, starlark.String("ab"), "must be a list, not string"},
		{"strlist", &builtins.OptStrList{}, list, "[1] must be a string, not int"},
		{"strlist", &builtins.OptStrList{}, starlark.NewList(nil), "{[] true}"},
		{"dict", &builtins.OptDict{}, list, "must be a dict, not list"},
	} {
		got := ""
		if err := tc.u.Unpack(tc.v); err != nil {
			got = err.Error()
		} else {
			got = fmt.Sprint(tc.u)
			got = got[1:] // drop the & of the pointer
		}
		if got != tc.want {
			t.Errorf("%s.Unpack(%s) = %s, want %s", tc.name, tc.v, got, tc.want)
		}
	}
	if n, err := (builtins.OptInt{V: 70000, Set: true}).In(623, 1, 65535); err == nil || err.Error() != "= 70000 is out of range 1..65535" {
		t.Errorf("OptInt{70000}.In(623, 1, 65535) = %d, %v; want out of range", n, err)
	}
	if n, err := (builtins.OptInt{}).In(623, 1, 65535); err != nil || n != 623 {
		t.Errorf("OptInt{}.In(623, 1, 65535) = %d, %v; want 623", n, err)
	}
}
