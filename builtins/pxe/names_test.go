package pxe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		in, want, reason string
	}{
		{"pxelinux.0", "pxelinux.0", ""},
		{"./pxelinux.cfg/default", "pxelinux.cfg/default", ""},
		{"abc/..x", "abc/..x", ""},
		{"", "", "empty"},
		{"./", "", "empty"},
		{"../etc/passwd", "", "dotdot"},
		{"a/../../b", "", "dotdot"},
		{"a/..", "", "dotdot"},
		{"/etc/passwd", "", "absolute"},
		{"a\x00b", "", "nul_byte"},
		{"a\nb", "", "control_char"},
		{`..\..\x`, "", "backslash"},
		{strings.Repeat("x", MaxNameLen), strings.Repeat("x", MaxNameLen), ""},
		{strings.Repeat("x", MaxNameLen+1), "", "too_long"},
	}
	for _, tt := range tests {
		got, err := ValidName(tt.in)
		reason := ""
		if re, ok := err.(*RefusedError); ok {
			reason = re.Reason
		} else if err != nil {
			reason = err.Error()
		}
		if got != tt.want || reason != tt.reason {
			t.Errorf("ValidName(%q) = %q, %q, want %q, %q", tt.in, got, reason, tt.want, tt.reason)
		}
	}
}

func TestParseConfigName(t *testing.T) {
	tests := []struct {
		in   string
		want ConfigKind
		mac  string
	}{
		{"pxelinux.cfg/01-52-54-00-12-34-56", ConfigMAC, "52:54:00:12:34:56"},
		{"pxelinux.cfg/01-52-54-00-AB-CD-EF", ConfigMAC, "52:54:00:ab:cd:ef"},
		{"pxelinux.cfg/b8945908-d6a6-41a9-611d-74a6ab80b83d", ConfigUUID, ""},
		{"pxelinux.cfg/C0A8025B", ConfigIP, ""},
		{"pxelinux.cfg/C", ConfigIP, ""},
		{"pxelinux.cfg/default", ConfigDefault, ""},
		{"pxelinux.cfg/01-52-54-00-12-34", ConfigOther, ""},
		{"pxelinux.cfg/c0a8025b", ConfigOther, ""},
		{"pxelinux.cfg/", ConfigOther, ""},
		{"pxelinux.0", NotConfig, ""},
		{"x/pxelinux.cfg/default", NotConfig, ""},
	}
	for _, tt := range tests {
		got, mac := ParseConfigName(tt.in)
		gotMAC := ""
		if mac != nil {
			gotMAC = mac.String()
		}
		if got != tt.want || gotMAC != tt.mac {
			t.Errorf("ParseConfigName(%q) = %s, %q, want %s, %q", tt.in, got, gotMAC, tt.want, tt.mac)
		}
	}
}

func FuzzValidName(f *testing.F) {
	for _, s := range []string{"pxelinux.0", "../x", "pxelinux.cfg/01-52-54-00-12-34-56", "./a/./b", "a\x00", "pxelinux.cfg/C0A8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := ValidName(name)
		if err != nil {
			if got != "" {
				t.Errorf("ValidName(%q) = %q and error %v", name, got, err)
			}
			return
		}
		if got == "" || len(got) > MaxNameLen || got[0] == '/' || strings.ContainsAny(got, "\x00\\") {
			t.Errorf("ValidName(%q) = %q, accepted a bad name", name, got)
		}
		for _, el := range strings.Split(got, "/") {
			if el == ".." {
				t.Errorf("ValidName(%q) = %q, accepted ..", name, got)
			}
		}
		if again, err := ValidName(got); err != nil || again != got {
			t.Errorf("ValidName(ValidName(%q)) = %q, %v, want it unchanged", name, again, err)
		}
		kind, mac := ParseConfigName(got)
		if (kind == ConfigMAC) != (mac != nil) {
			t.Errorf("ParseConfigName(%q) = %s, %v", got, kind, mac)
		}
		if kind == ConfigMAC && MACConfigName(mac) != strings.ToLower(got) {
			t.Errorf("MACConfigName(ParseConfigName(%q)) = %q", got, MACConfigName(mac))
		}
		_ = utf8.ValidString(got)
	})
}
