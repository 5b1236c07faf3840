package sign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// PEM block types of cosign's key files.
const (
	SigstorePrivateKeyType = "ENCRYPTED SIGSTORE PRIVATE KEY"
	CosignPrivateKeyType   = "ENCRYPTED COSIGN PRIVATE KEY"
	PublicKeyType          = "PUBLIC KEY"
)

// envelope is the JSON that cosign's encrypted private key PEM holds
// (go-securesystemslib's encrypted format).
type envelope struct {
	KDF struct {
		Name   string       `json:"name"`
		Params scryptParams `json:"params"`
		Salt   []byte       `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

type scryptParams struct {
	N int `json:"N"`
	R int `json:"r"`
	P int `json:"p"`
}

// The scrypt parameters the format allows (legacy, standard, OWASP); a key
// file asking for others is refused rather than run.
var knownParams = []scryptParams{{32768, 8, 1}, {65536, 8, 1}, {131072, 8, 1}}

// ErrWrongPassword is returned when a private key does not open with the
// password given.
var ErrWrongPassword = errors.New("the password does not decrypt the key (COSIGN_PASSWORD)")

// ParsePrivateKey opens a cosign encrypted private key PEM with password.
func ParsePrivateKey(data, password []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM file")
	}
	if block.Type != SigstorePrivateKeyType && block.Type != CosignPrivateKeyType {
		return nil, fmt.Errorf("PEM block %q is not a cosign private key (%q)", block.Type, SigstorePrivateKeyType)
	}
	var env envelope
	if err := json.Unmarshal(block.Bytes, &env); err != nil {
		return nil, fmt.Errorf("the encrypted key is not cosign's JSON envelope: %v", err)
	}
	if env.KDF.Name != "scrypt" || env.Cipher.Name != "nacl/secretbox" {
		return nil, fmt.Errorf("unsupported key encryption %s/%s (want scrypt/nacl/secretbox)", env.KDF.Name, env.Cipher.Name)
	}
	known := false
	for _, p := range knownParams {
		known = known || p == env.KDF.Params
	}
	if !known {
		return nil, fmt.Errorf("unsupported scrypt parameters N=%d r=%d p=%d", env.KDF.Params.N, env.KDF.Params.R, env.KDF.Params.P)
	}
	if len(env.Cipher.Nonce) != 24 {
		return nil, errors.New("the key's nonce is not 24 bytes")
	}
	key, err := scrypt.Key(password, env.KDF.Salt, env.KDF.Params.N, env.KDF.Params.R, env.KDF.Params.P, 32)
	if err != nil {
		return nil, err
	}
	var k [32]byte
	var nonce [24]byte
	copy(k[:], key)
	copy(nonce[:], env.Cipher.Nonce)
	der, ok := secretbox.Open(nil, env.Ciphertext, &nonce, &k)
	if !ok {
		return nil, ErrWrongPassword
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("the decrypted key is not PKCS#8: %v", err)
	}
	s, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", priv)
	}
	switch s.(type) {
	case *ecdsa.PrivateKey:
	default:
		return nil, fmt.Errorf("unsupported private key type %T (kiln signs with ECDSA keys, as cosign generate-key-pair makes)", priv)
	}
	return s, nil
}

// ParsePublicKey reads a PKIX "PUBLIC KEY" PEM (cosign.pub).
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM file")
	}
	if block.Type != PublicKeyType {
		return nil, fmt.Errorf("PEM block %q is not a public key (%q)", block.Type, PublicKeyType)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("unsupported public key type %T (want ECDSA)", pub)
	}
	return pub, nil
}

// GenerateKeyPair makes an ECDSA P-256 key pair as cosign generate-key-pair
// does: the private key encrypted with password, both PEM.
func GenerateKeyPair(password []byte) (privPEM, pubPEM []byte, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	var env envelope
	env.KDF.Name, env.KDF.Params = "scrypt", knownParams[1]
	env.KDF.Salt = make([]byte, 32)
	env.Cipher.Name = "nacl/secretbox"
	env.Cipher.Nonce = make([]byte, 24)
	if _, err := rand.Read(env.KDF.Salt); err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(env.Cipher.Nonce); err != nil {
		return nil, nil, err
	}
	key, err := scrypt.Key(password, env.KDF.Salt, env.KDF.Params.N, env.KDF.Params.R, env.KDF.Params.P, 32)
	if err != nil {
		return nil, nil, err
	}
	var k [32]byte
	var nonce [24]byte
	copy(k[:], key)
	copy(nonce[:], env.Cipher.Nonce)
	env.Ciphertext = secretbox.Seal(nil, der, &nonce, &k)
	body, err := json.Marshal(env)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: SigstorePrivateKeyType, Bytes: body}),
		pem.EncodeToMemory(&pem.Block{Type: PublicKeyType, Bytes: pubDER}), nil
}
