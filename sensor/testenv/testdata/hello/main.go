// Command hello is what testenv's tests build: the smallest main package.
package main

import "fmt"

func main() { fmt.Println("hello from a built binary") }
