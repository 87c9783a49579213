// Package pxe serves the PXE boot of one job: its kernel, initrd and dtb
// over TFTP (github.com/pin/tftp/v3) and HTTP (net/http, Range requests),
// with boot configs generated in memory for the job's MAC alone, and
// optionally a proxy DHCP (github.com/insomniacslk/dhcp) that points the
// device's PXE ROM at them without touching the site DHCP server, or a
// DHCP server of the segment (server mode, dhcpserver.go) that leases to
// the job's device alone, finds other servers answering there, and sends
// IPv6 router advertisements that configure nothing so iPXE does not wait
// for IPv6 (ra.go).
//
// Nothing is written to a TFTP root. The namespace a client sees is:
//
//	<nonce>/<file>                 the job's kernel, initrd, dtb
//	pxelinux.cfg/01-<mac>          pxelinux config (UUID, hex-IP and default
//	                               lookups get "file not found")
//	<nonce>/boot.ipxe              iPXE script (HTTP URLs)
//	grub/grub.cfg-01-<mac>         GRUB config (HTTP URLs)
//	pxelinux.0, ldlinux.c32, ...   bootloaders from Config.LoaderDir (os.Root)
//	files/<name>                   HTTP only: files given to Server.Publish
//	                               or, from memory, Server.PublishData
//
// Names with "..", a leading "/", backslashes, NUL or control bytes, or
// longer than MaxNameLen are refused and recorded as "pxe_refused" events.
// Every transfer is an event ("tftp", "http", "dhcp"); Serve records
// "pxe_serve". Each Serve draws a fresh nonce that is appended to the kernel
// command line as basalt.nonce=<nonce>, so a job can prove that the system
// it reached booted its own kernel. The job's files are resolved by package
// runtime/artifact, the rule every builtin shares: paths relative to the job
// directory through os.Root, http(s) URLs through the lab's cache.
//
// The Starlark module (Table, module "pxe"):
//
//	serve(kernel, initrd=None, append="", dtb=None, mac=None, loader=None, sha256=None) -> struct
//	wait_fetch(name, timeout=None)
//	stop()
//	publish(name, data) -> url
//	wait_request(prefix, timeout=None) -> struct
//	leases() -> list
//
// The simulated PXE client that boots from this server lives in
// builtins/pxe/pxesim.
package pxe
