package record

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target bpfel -type rec_kind -type rec_op -type rec_flag -type exec_reason -type seal_rule -type rec_hdr -type file_rec -type exec_rec -type net_rec rec ../../bpf/record.c -- -I../../headers -I../../bpf
