-- Links to this site's own pages made relative.
-- nbdev turns `name` into a link to https://<doc_host><doc_baseurl>/<page>.html#name (the `site-url` that nbdev writes
-- into nbdev.yml from settings.ini); relative, the link resolves within the built site, published or opened from disk.
local prefix

local function site_url()
  local f = io.open(quarto.project.directory .. '/nbdev.yml', 'r')
  if not f then return false end
  local text = f:read('*a')
  f:close()
  local url = text:match('site%-url:%s*"?([^"\n]+)"?')
  return url and (url:gsub('/+$', '') .. '/') or false
end

function Link(el)
  if prefix == nil then prefix = site_url() end
  if prefix and el.target:sub(1, #prefix) == prefix then
    el.target = el.target:sub(#prefix + 1)
    if el.target == '' then el.target = 'index.html' end
  end
  return el
end
