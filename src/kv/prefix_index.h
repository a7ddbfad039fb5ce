// PrefixIndex: a radix tree of cached KV blocks, keyed by chained block
// hash (kv/block_hash.h). Metadata only: a node is a block hash, its parent
// node, its children, and an int32 value (here a block id; a router's global
// index may store a worker id instead). No tensors, no model.
//
// Because a block's hash covers every token before it, a root-to-node path
// is one token prefix, and "the longest cached prefix of these tokens" is
// the longest run of the tokens' hash chain that walks down the tree from a
// top-level node. Every node's parent is in the tree (a node is inserted
// under a present parent, and Erase removes a whole subtree), so a child is
// never reachable without its prefix.
//
// Top-level nodes are the first blocks of chains; chains with different
// roots (different model, KV type, block size or cache salt) never meet,
// because the root is hashed into their first block.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "kv/block_hash.h"

namespace kvinfer {

class PrefixIndex {
 public:
  // Adds `hash` with `value` under `parent` (nullopt: a chain's first
  // block). Returns false, changing nothing, if `hash` is already present
  // or the parent is not.
  bool Insert(const std::optional<BlockHash>& parent, const BlockHash& hash, int32_t value);
  // The value stored under `hash`, or nullopt.
  std::optional<int32_t> Find(const BlockHash& hash) const;
  bool Contains(const BlockHash& hash) const { return nodes_.contains(hash); }
  // How many leading hashes of `chain` are present, each the child of the
  // one before it (chain[0] a top-level node).
  int32_t MatchLength(std::span<const BlockHash> chain) const;
  // Removes `hash` and every node below it; appends the removed nodes'
  // values to `removed` (the node itself first, then its subtree), if given.
  // Returns the number of nodes removed (0 if absent).
  int32_t Erase(const BlockHash& hash, std::vector<int32_t>* removed = nullptr);
  void Clear() { nodes_.clear(); }

  // The values of the nodes with no children, in no particular order.
  std::vector<int32_t> LeafValues() const;
  bool IsLeaf(const BlockHash& hash) const;
  std::optional<BlockHash> Parent(const BlockHash& hash) const;
  int32_t size() const { return static_cast<int32_t>(nodes_.size()); }

 private:
  struct Node {
    std::optional<BlockHash> parent;
    std::vector<BlockHash> children;
    int32_t value = -1;
  };
  std::unordered_map<BlockHash, Node, BlockHashHasher> nodes_;
};

}  // namespace kvinfer
