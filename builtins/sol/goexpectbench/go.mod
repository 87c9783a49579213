module github.com/basalt-lab/basalt/builtins/sol/goexpectbench

go 1.26.8

require (
	github.com/basalt-lab/basalt v0.0.0
	github.com/google/goexpect v0.0.0-20210430020637-ab937bf7fd6f
)

require (
	github.com/creack/pty v1.1.24 // indirect
	github.com/golang/protobuf v1.5.0 // indirect
	github.com/google/goterm v0.0.0-20190703233501-fc88cf888a3f // indirect
	github.com/rogpeppe/go-internal v1.14.1 // indirect
	go.starlark.net v0.0.0-20251109183026-be02852a5e1f // indirect
	golang.org/x/crypto v0.43.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/genproto v0.0.0-20190819201941-24fa4b261c55 // indirect
	google.golang.org/grpc v1.31.0 // indirect
	google.golang.org/protobuf v1.33.0 // indirect
	mvdan.cc/sh/v3 v3.13.1 // indirect
)

replace github.com/basalt-lab/basalt => ../../..
