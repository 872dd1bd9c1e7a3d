package gate

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type gate_key -type gate_rule gate ../../bpf/gate.c -- -I../../headers -I../../bpf
