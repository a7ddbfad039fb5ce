"""Prefix caching through the server: a 10-turn conversation reuses its
earlier turns (usage.prompt_tokens_details.cached_tokens), so each turn
prefills about what is new; a repeated long prompt is served from the cache
with the same greedy answer; cache_salt isolates tenants."""
from __future__ import annotations

BLOCK = 16  # kvinfer serve's default --block-size

QUESTIONS = ["Tell me about the ocean.", "Why is it salty?", "What lives in the deep sea?",
             "How deep is the deepest point?", "Who explored it first?", "What about submarines?",
             "How do whales breathe?", "Are sharks dangerous?", "What is coral?",
             "Summarize our chat."]


def test_ten_turn_conversation_prefills_only_what_is_new(client):
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    computed = 0  # tokens whose K/V the previous turn left in the cache
    for turn, q in enumerate(QUESTIONS, start=1):
        messages.append({"role": "user", "content": q})
        r = client.chat.completions.create(model=client.models.list().data[0].id,
                                           messages=messages, max_tokens=32, temperature=0)
        u = r.usage
        cached = u.prompt_tokens_details.cached_tokens
        prefilled = u.prompt_tokens - cached
        if turn >= 2:
            new = u.prompt_tokens - computed  # the new user message and the template's tail
            # What is new, the last partial block, and at most one block whose
            # ids the re-rendered reply changed.
            assert prefilled <= new + 2 * BLOCK, (turn, u)
            assert cached >= computed - 2 * BLOCK, (turn, u)
        messages.append({"role": "assistant", "content": r.choices[0].message.content})
        # The last sampled token has no K/V yet; everything before it does.
        computed = u.prompt_tokens + u.completion_tokens - 1


def test_repeated_prompt_hits_and_answers_the_same(client):
    model = client.models.list().data[0].id
    prompt = "Here is a long shared system prompt. " * 20 + "Question: what is two plus two?"
    first = client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0)
    second = client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0)
    assert second.choices[0].text == first.choices[0].text
    n = second.usage.prompt_tokens
    assert second.usage.prompt_tokens_details.cached_tokens == (n - 1) // BLOCK * BLOCK
    salted = client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0,
                                       extra_body={"cache_salt": "another-tenant"})
    assert salted.usage.prompt_tokens_details.cached_tokens == 0
    assert salted.choices[0].text == first.choices[0].text
