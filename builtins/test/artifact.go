package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
	starjson "go.starlark.net/lib/json"
	"go.starlark.net/starlark"
)

// SummaryRecorder is a Recorder that keeps named summaries in result.json
// (its "extra" object). The result bundle implements it.
type SummaryRecorder interface {
	SetExtra(key string, raw json.RawMessage) error
}

// The members for what a job gathers that is not a test case (an
// inventory): appended here so that the table's literal stays as it was.
func init() {
	Table.Members = append(Table.Members, builtins.Builtin{
		Name:   "artifact",
		Params: "name, data",
		Doc: "Stores data (a string, or any value json.encode takes, written as JSON) as artifacts/NAME in the " +
			"bundle, recorded in result.json's artifacts with its sha256. name is a relative slash path without \"..\". " +
			"Returns the bundle-relative path.",
		Action: true,
		Fn:     artifact,
	}, builtins.Builtin{
		Name:   "summary",
		Params: "key, value",
		Doc: "Puts value (anything json.encode takes) into result.json as extra.KEY, replacing an earlier " +
			"summary of that key: a job's facts about the device (@stdlib//inventory.star) next to its results.",
		Action: true,
		Fn:     summary,
	})
}

func encode(thread *starlark.Thread, v starlark.Value) (string, error) {
	out, err := starlark.Call(thread, starjson.Module.Members["encode"], starlark.Tuple{v}, nil)
	if err != nil {
		return "", err
	}
	s, _ := starlark.AsString(out)
	return s, nil
}

func artifact(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var file string
	var data starlark.Value
	if err := starlark.UnpackArgs(name, args, kwargs, "name", &file, "data", &data); err != nil {
		return nil, builtins.Job(err)
	}
	clean := path.Clean(file)
	if file == "" || path.IsAbs(file) || clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, builtins.Job(fmt.Errorf("%s: name %q must be a relative path inside artifacts/", name, file))
	}
	text, ok := starlark.AsString(data)
	if !ok {
		s, err := encode(thread, data)
		if err != nil {
			return nil, builtins.Job(fmt.Errorf("%s: %w", name, err))
		}
		text = s + "\n"
	}
	env := builtins.EnvOf(thread)
	if env == nil || env.Rec == nil {
		return nil, builtins.Job(fmt.Errorf("%s: no bundle to store %s in", name, clean))
	}
	rel, err := env.Rec.Artifact(clean, strings.NewReader(text), "")
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("%s: store %s: %w", name, clean, err))
	}
	return starlark.String(rel), nil
}

func summary(thread *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var key string
	var value starlark.Value
	if err := starlark.UnpackArgs(name, args, kwargs, "key", &key, "value", &value); err != nil {
		return nil, builtins.Job(err)
	}
	if key == "" {
		return nil, builtins.Job(errors.New(name + ": empty key"))
	}
	s, err := encode(thread, value)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("%s: %w", name, err))
	}
	env := builtins.EnvOf(thread)
	var rec SummaryRecorder
	if env != nil {
		rec, _ = env.Rec.(SummaryRecorder)
	}
	if rec == nil {
		return nil, builtins.Job(fmt.Errorf("%s: no result.json to put %s in", name, key))
	}
	if err := rec.SetExtra(key, json.RawMessage(s)); err != nil {
		return nil, builtins.Infra(fmt.Errorf("%s: %w", name, err))
	}
	return starlark.None, nil
}
