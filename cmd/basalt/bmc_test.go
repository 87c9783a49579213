package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/basalt-lab/basalt/builtins/ipmi/bmcsim"
	"github.com/rogpeppe/go-internal/testscript"
)

// bmcDevice FILE NAME MODE writes a lab device file for a highbank named
// NAME whose BMC, on 127.0.0.1, is
//
//	wrongpw  go-ipmi's BMC server (the sim BMC) with user admin and
//	         password right-pw, while the device's password comes from
//	         $BMC_PW;
//	refused  a UDP port nothing listens on (ICMP port unreachable);
//	silent   a UDP socket that never answers.
//
// The BMC lives until the script ends.
func bmcDevice(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: bmcdevice FILE NAME wrongpw|refused|silent")
	}
	var port int
	switch args[2] {
	case "wrongpw":
		b := bmcsim.New(bmcsim.Config{User: "admin", Password: "right-pw"})
		ts.Check(b.Start(context.Background(), "127.0.0.1:0"))
		ts.Defer(func() { b.Close() })
		port = b.Addr().Port
	case "refused":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		ts.Check(err)
		port = c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
	case "silent":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		ts.Check(err)
		ts.Defer(func() { c.Close() })
		port = c.LocalAddr().(*net.UDPAddr).Port
	default:
		ts.Fatalf("bmcdevice: unknown mode %q", args[2])
	}
	dev := fmt.Sprintf(`device(name = %q, type = "highbank", ipmi_host = "127.0.0.1", ipmi_port = %d,
    ipmi_user = "admin", ipmi_password = secret("BMC_PW"), cipher_suites = [3],
    ipmi_timeout_ms = 300, ipmi_retries = 1)
`, args[1], port)
	path := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(filepath.Dir(path), 0o755))
	ts.Check(os.WriteFile(path, []byte(dev), 0o644))
}
