package spell

import "testing"

func TestSuggest(t *testing.T) {
	known := []string{"cipher_suites", "kernel_console", "ipmi_host", "expect", "timeout", "mac"}
	for _, c := range []struct{ in, want string }{
		{"cipher_suite", "cipher_suites"},
		{"kernel_consol", "kernel_console"},
		{"ipmi_hots", "ipmi_host"},
		{"expct", "expect"},
		{"timeot", "timeout"},
		{"rack", ""},
		{"tiemout", "timeout"},
		{"ipmi_hst", "ipmi_host"},
		{"kern_console", "kernel_console"},
		{"completely_different", ""},
	} {
		if got := Suggest(c.in, known); got != c.want {
			t.Errorf("Suggest(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
