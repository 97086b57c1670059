/** The HTTP/2 client connection preface (RFC 9113 3.4): how an h2c prior-knowledge connection starts. */
export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
