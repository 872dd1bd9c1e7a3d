package lsm

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type config -type rule_val -type lpm_key -type seen_key -type file_id lsm ../../bpf/lsm.c -- -I../../headers -I../../bpf
