package ubootsim

import (
	"io"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzReplyOptions: whatever a DHCP server on the segment sends, reading
// its options (options field, then file and sname when option 52 says
// so) neither panics nor reads past the packet.
func FuzzReplyOptions(f *testing.F) {
	m, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32))),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.IPv4(10, 0, 0, 1))),
		dhcpv4.WithOption(dhcpv4.OptBootFileName("zImage")),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionOptionOverload, []byte{3})),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionHostName, make([]byte, 40))))
	f.Add(m.ToBytes())
	f.Add(make([]byte, 240))
	short := m.ToBytes()
	f.Add(short[:245])
	f.Fuzz(func(t *testing.T, pkt []byte) {
		b := &board{out: io.Discard}
		l := b.options(pkt)
		if len(l.bootFile) > 127 || len(l.hostname) > 31 || len(l.rootPath) > 63 {
			t.Errorf("a field longer than U-Boot's buffer: %+v", l)
		}
	})
}
