#include "kv/prefix_index.h"

#include <algorithm>

namespace kvinfer {

bool PrefixIndex::Insert(const std::optional<BlockHash>& parent, const BlockHash& hash,
                         int32_t value) {
  if (nodes_.contains(hash)) return false;
  Node* p = nullptr;
  if (parent) {
    auto it = nodes_.find(*parent);
    if (it == nodes_.end()) return false;
    p = &it->second;
    p->children.push_back(hash);
  }
  try {
    nodes_.emplace(hash, Node{.parent = parent, .children = {}, .value = value});
  } catch (...) {
    if (p != nullptr) p->children.pop_back();
    throw;
  }
  return true;
}

std::optional<int32_t> PrefixIndex::Find(const BlockHash& hash) const {
  auto it = nodes_.find(hash);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.value;
}

int32_t PrefixIndex::MatchLength(std::span<const BlockHash> chain) const {
  int32_t n = 0;
  const BlockHash* parent = nullptr;
  for (const BlockHash& h : chain) {
    auto it = nodes_.find(h);
    if (it == nodes_.end()) break;
    const std::optional<BlockHash>& p = it->second.parent;
    // A hash chain's links are implied by the hashes; this only guards
    // against a (vanishingly unlikely) collision linking unrelated chains.
    if (parent == nullptr ? p.has_value() : (!p || *p != *parent)) break;
    parent = &it->first;
    ++n;
  }
  return n;
}

int32_t PrefixIndex::Erase(const BlockHash& hash, std::vector<int32_t>* removed) {
  auto it = nodes_.find(hash);
  if (it == nodes_.end()) return 0;
  if (it->second.parent) {
    std::vector<BlockHash>& siblings = nodes_.at(*it->second.parent).children;
    siblings.erase(std::find(siblings.begin(), siblings.end(), hash));
  }
  // Depth-first over the subtree with an explicit stack (chains may be long).
  int32_t count = 0;
  std::vector<BlockHash> stack{hash};
  while (!stack.empty()) {
    const BlockHash h = stack.back();
    stack.pop_back();
    auto node = nodes_.find(h);
    if (removed != nullptr) removed->push_back(node->second.value);
    stack.insert(stack.end(), node->second.children.rbegin(), node->second.children.rend());
    nodes_.erase(node);
    ++count;
  }
  return count;
}

std::vector<int32_t> PrefixIndex::LeafValues() const {
  std::vector<int32_t> out;
  for (const auto& [h, n] : nodes_) {
    if (n.children.empty()) out.push_back(n.value);
  }
  return out;
}

bool PrefixIndex::IsLeaf(const BlockHash& hash) const {
  auto it = nodes_.find(hash);
  return it != nodes_.end() && it->second.children.empty();
}

std::optional<BlockHash> PrefixIndex::Parent(const BlockHash& hash) const {
  auto it = nodes_.find(hash);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.parent;
}

}  // namespace kvinfer
