package pxesim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want Label
	}{
		{"label", "DEFAULT basalt\nPROMPT 0\nLABEL basalt\n  KERNEL a/vmlinuz\n  INITRD a/initrd.gz\n  FDT a/x.dtb\n  APPEND console=ttyAMA0 basalt.nonce=1\n",
			Label{Name: "basalt", Kernel: "a/vmlinuz", Initrd: []string{"a/initrd.gz"}, FDT: "a/x.dtb", Append: "console=ttyAMA0 basalt.nonce=1"}},
		{"linux keyword, initrd= in append, lower case", "default x\nlabel x\nlinux k\nappend initrd=i1,i2 quiet\n",
			Label{Name: "x", Kernel: "k", Initrd: []string{"i1", "i2"}, Append: "initrd=i1,i2 quiet"}},
		{"default is a command line", "DEFAULT vmlinuz initrd=r.gz ro\n",
			Label{Name: "vmlinuz", Kernel: "vmlinuz", Initrd: []string{"r.gz"}, Append: "initrd=r.gz ro"}},
		{"no default takes the first label, APPEND -", "# c\r\nLABEL one\r\nKERNEL k1\r\nAPPEND -\r\nLABEL two\r\nKERNEL k2\r\n",
			Label{Name: "one", Kernel: "k1"}},
		{"tabs", "DEFAULT\tl\nLABEL l\n\tKERNEL\tk\n",
			Label{Name: "l", Kernel: "k"}},
	}
	for _, tt := range tests {
		m, err := ParseConfig([]byte(tt.cfg))
		if err != nil {
			t.Errorf("%s: ParseConfig = %v", tt.name, err)
			continue
		}
		got, err := m.Entry()
		if err != nil {
			t.Errorf("%s: Entry = %v", tt.name, err)
			continue
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("%s: Entry() mismatch (-want +got):\n%s", tt.name, d)
		}
	}
	for _, bad := range []string{"KERNEL k\n", "LABEL\n", "", "DEFAULT x\nLABEL x\nAPPEND a\n"} {
		m, err := ParseConfig([]byte(bad))
		if err == nil {
			_, err = m.Entry()
		}
		if err == nil {
			t.Errorf("ParseConfig+Entry(%q) = nil error, want one", bad)
		}
	}
}

func TestLookupOrder(t *testing.T) {
	mac, _ := net.ParseMAC("88:99:AA:BB:CC:DD")
	got := LookupOrder("B8945908-D6A6-41A9-611D-74A6AB80B83D", mac, net.IPv4(192, 168, 2, 91))
	// The example in syslinux doc/pxelinux.txt.
	want := []string{
		"pxelinux.cfg/b8945908-d6a6-41a9-611d-74a6ab80b83d",
		"pxelinux.cfg/01-88-99-aa-bb-cc-dd",
		"pxelinux.cfg/C0A8025B", "pxelinux.cfg/C0A8025", "pxelinux.cfg/C0A802", "pxelinux.cfg/C0A80",
		"pxelinux.cfg/C0A8", "pxelinux.cfg/C0A", "pxelinux.cfg/C0", "pxelinux.cfg/C",
		"pxelinux.cfg/default",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("LookupOrder mismatch (-want +got):\n%s", d)
	}
}

// fakeServer serves fixed files with pin/tftp; "short" announces a larger
// tsize than it sends, as a truncated file would.
func fakeServer(t *testing.T, files map[string]string) string {
	t.Helper()
	s := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		data, ok := files[name]
		if !ok {
			return errors.New("file not found")
		}
		if strings.HasSuffix(name, "short") {
			rf.(tftp.OutgoingTransfer).SetSize(int64(len(data) + 100))
		}
		_, err := rf.ReadFrom(strings.NewReader(data))
		return err
	}, nil)
	s.SetTimeout(200 * time.Millisecond)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(pc); close(done) }()
	t.Cleanup(func() { s.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

func TestBootFailures(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	tests := []struct {
		name    string
		cfg     string
		files   map[string]string
		stage   string
		console string
	}{
		{"missing kernel", "DEFAULT l\nLABEL l\nKERNEL gone\n", nil, "kernel", "Could not find kernel image: gone"},
		{"truncated kernel", "DEFAULT l\nLABEL l\nKERNEL k.short\n", map[string]string{"k.short": "abc"}, "kernel", "Invalid or corrupt kernel image."},
		{"empty initrd", "DEFAULT l\nLABEL l\nKERNEL k\nINITRD i\n", map[string]string{"k": "kernel", "i": ""}, "initrd", "Loading i...failed"},
		{"bad config", "APPEND x\n", nil, "config", "Unable to parse configuration file"},
	}
	for _, tt := range tests {
		files := map[string]string{"pxelinux.cfg/default": tt.cfg}
		for k, v := range tt.files {
			files[k] = v
		}
		var con bytes.Buffer
		_, err := Boot(context.Background(), Config{TFTPAddr: fakeServer(t, files), MAC: mac, Console: &con})
		var be *BootError
		if !errors.As(err, &be) || be.Stage != tt.stage {
			t.Errorf("%s: Boot = %v, want a BootError at %s", tt.name, err, tt.stage)
		}
		if !strings.Contains(con.String(), tt.console) {
			t.Errorf("%s: console = %q, want %q", tt.name, con.String(), tt.console)
		}
	}
}

func TestBootKeepsData(t *testing.T) {
	addr := fakeServer(t, map[string]string{
		"pxelinux.cfg/C000020A": "DEFAULT l\nSAY hello from the config\nLABEL l\nKERNEL k\nAPPEND initrd=i basalt.nonce=abc\n",
		"k":                     "KERNEL", "i": "INITRD",
	})
	var con bytes.Buffer
	b, err := Boot(context.Background(), Config{TFTPAddr: addr, MAC: "02:00:00:00:00:02", Console: &con, KeepData: true})
	if err != nil {
		t.Fatalf("Boot = %v\n%s", err, con.String())
	}
	if b.Config != "pxelinux.cfg/C000020A" || string(b.Kernel.Data) != "KERNEL" || len(b.Initrd) != 1 || string(b.Initrd[0].Data) != "INITRD" || b.Nonce != "abc" {
		t.Errorf("Boot = %+v, want the IP config, kernel and initrd data, nonce abc", b)
	}
	if !strings.Contains(con.String(), "hello from the config") {
		t.Errorf("console = %q, want the SAY line", con.String())
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("DEFAULT basalt\nLABEL basalt\nKERNEL k\nINITRD i\nAPPEND a initrd=x,y\n"))
	f.Add([]byte("default k initrd=\n"))
	f.Add([]byte("LABEL\tx\n\tLINUX\t\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseConfig(data)
		if err != nil {
			return
		}
		l, err := m.Entry()
		if err != nil {
			return
		}
		if l.Kernel == "" {
			t.Errorf("Entry() = %+v with no kernel and no error", l)
		}
		for _, i := range l.Initrd {
			if i == "" || strings.Contains(i, ",") {
				t.Errorf("initrd %q: empty or unsplit", i)
			}
		}
	})
}
