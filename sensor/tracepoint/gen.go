package tracepoint

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type config -type rule_val -type lpm_key -type dirlink -type file_id tp ../../bpf/tracepoint.c -- -I../../headers -I../../bpf
