"""The smartward wire contract v1: message models, topics, codec, catalog, registry.

Pure: no I/O beyond reading the bundled data files. Every component imports this
package; none imports another component.
"""

from __future__ import annotations

CONTRACT_VERSION = 1
