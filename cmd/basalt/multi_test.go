package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitDevices(t *testing.T) {
	for _, tc := range []struct {
		in     []string
		device string
		roles  map[string]string
		err    string
	}{
		{in: nil},
		{in: []string{"sim"}, device: "sim"},
		{in: []string{"lab/devices/x.star"}, device: "lab/devices/x.star"},
		{in: []string{"server=hb01", "client=sim"}, roles: map[string]string{"server": "hb01", "client": "sim"}},
		{in: []string{"a=b=c"}, roles: map[string]string{"a": "b=c"}},
		{in: []string{"=hb01"}, err: `--device "=hb01": want NAME, or ROLE=NAME`},
		{in: []string{"server="}, err: `--device "server=": want NAME, or ROLE=NAME`},
		{in: []string{"a=x", "a=y"}, err: "--device: role a given twice (x and y)"},
		{in: []string{"x", "y"}, err: "--device given 2 times without ROLE="},
		{in: []string{"x", "a=y"}, err: "--device x and --device ROLE=NAME: give one, or ROLE=NAME for every role"},
	} {
		f := jobFlags{devices: tc.in}
		err := f.splitDevices()
		if tc.err != "" {
			if err == nil || !isUsage(err) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("splitDevices(%q) = %v; want a usage error holding %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("splitDevices(%q) = %v", tc.in, err)
			continue
		}
		if f.device != tc.device || !cmp.Equal(f.roleDevices, tc.roles) {
			t.Errorf("splitDevices(%q) = %q, %v; want %q, %v", tc.in, f.device, f.roleDevices, tc.device, tc.roles)
		}
	}
}

// FuzzSplitDevices: any --device flags give a usage error or a device
// and roles with non-empty names, never both a device and roles.
func FuzzSplitDevices(f *testing.F) {
	for _, s := range []string{"sim", "a=sim\x00b=hb01", "=x", "a=\x00a=b", "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl := jobFlags{devices: strings.Split(s, "\x00")}
		if err := fl.splitDevices(); err != nil {
			if !isUsage(err) {
				t.Fatalf("splitDevices(%q) = %v, not a usage error", s, err)
			}
			return
		}
		if fl.device != "" && len(fl.roleDevices) > 0 {
			t.Fatalf("splitDevices(%q): device %q and roles %v", s, fl.device, fl.roleDevices)
		}
		for r, n := range fl.roleDevices {
			if r == "" || n == "" {
				t.Fatalf("splitDevices(%q): role %q device %q", s, r, n)
			}
		}
	})
}
