package bpftest

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target bpfel -type test_in -type test_out -type judge_req -type test_judge_in -type test_judge_out -type test_exec_in -type test_vma_io bpftest ../../bpf/test/test.c -- -I../../headers -I../../bpf
