// sifverify: verify a SIF's PGP signatures with the Go SIF library (Debian's sif 2.8.3).
// Usage: sifverify KEYRING IMAGE  — prints "OK" or the library's error, exit 0 / 1.
package main

import (
	"fmt"
	"os"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/sylabs/sif/v2/pkg/integrity"
	"github.com/sylabs/sif/v2/pkg/sif"
)

func main() {
	kf, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	kr, err := openpgp.ReadArmoredKeyRing(kf)
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	f, err := sif.LoadContainerFromPath(os.Args[2], sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	defer f.UnloadContainer()
	v, err := integrity.NewVerifier(f, integrity.OptVerifyWithKeyRing(kr))
	if err == nil {
		err = v.Verify()
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("OK")
}
