"""Mints and checks access tokens with PyJWT, an implementation independent of the node's.

Reads a JSON list on stdin and prints a JSON list of results:
  {"encode": CLAIMS, "secret": S, "alg": "HS256"}  -> the token (alg "none" takes no secret)
  {"decode": TOKEN, "secret": S}                   -> the verified claims (HS256 only)
"""

import json
import sys

import jwt


def main() -> None:
    out = []
    for req in json.load(sys.stdin):
        if "encode" in req:
            alg = req.get("alg", "HS256")
            key = None if alg == "none" else req["secret"]
            out.append(jwt.encode(req["encode"], key, algorithm=alg))
        else:
            out.append(jwt.decode(req["decode"], req["secret"], algorithms=["HS256"]))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
