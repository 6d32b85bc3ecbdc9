-- json_members.lua: included (--#include json_members) by the scripts that change a payload's
-- top-level fields.  They never decode and re-encode a payload (cjson would round large
-- integers and shorten floats in the arguments); they split it into its top-level members as
-- written, drop some, and append others, so every other byte stays as it was and no key is
-- ever written twice.

-- The top-level members of the JSON object `text`, in order, each {key, text as written}; nil
-- when `text` is not a JSON object this can split (the caller leaves such a payload alone).
local function json_members(text)
  if string.sub(text, 1, 1) ~= "{" then
    return nil
  end
  local members, depth, from, start, key = {}, 0, 1, 2, nil
  while true do
    local p = string.find(text, '[{}%[%],"]', from)
    if p == nil then
      return nil
    end
    local c = string.sub(text, p, p)
    if c == '"' then
      local q = p + 1
      while true do  -- to the closing quote, past escaped characters
        local e = string.find(text, '["\\]', q)
        if e == nil then
          return nil
        end
        if string.sub(text, e, e) == "\\" then
          q = e + 2
        else
          q = e
          break
        end
      end
      if depth == 1 and key == nil then
        key = string.sub(text, p + 1, q - 1)
      end
      from = q + 1
    elseif c == "{" or c == "[" then
      depth = depth + 1
      from = p + 1
    elseif c == "}" or c == "]" then
      depth = depth - 1
      if depth == 0 then
        if string.find(text, "%S", p + 1) then
          return nil
        end
        local last = string.sub(text, start, p - 1)
        if string.find(last, "%S") then
          members[#members + 1] = {key, last}
        end
        return members
      end
      from = p + 1
    else  -- ","
      if depth == 1 then
        members[#members + 1] = {key, string.sub(text, start, p - 1)}
        start, key = p + 1, nil
      end
      from = p + 1
    end
  end
end

-- `text` without its top-level members whose key is in the set `drop`, with `append` (members
-- as JSON text, starting with a comma) added last; nil when `text` cannot be split.
local function with_fields(text, drop, append)
  local members = json_members(text)
  if members == nil then
    return nil
  end
  local kept = {}
  for _, member in ipairs(members) do
    if not drop[member[1]] then
      kept[#kept + 1] = member[2]
    end
  end
  if #kept == 0 then
    append = string.sub(append, 2)
  end
  return "{" .. table.concat(kept, ",") .. append .. "}"
end
