"""Operations on a running lab: reaching its VMs (access), making them what they are (inventory,
configure) and rehearsing disasters (drill)."""
